"""Per-example PRNG keys and the example count; chunked streaming is :mod:`fnet.chunking`."""

from __future__ import annotations

from typing import Any

import jax

from fnet.chunking import leading_size

__all__ = ["batch_size", "example_keys"]


def batch_size(x: Any) -> int:
    """The number of examples ``n``: the leading dimension shared by every leaf of ``x``.

    Raises:
      ValueError: the leaves disagree on the leading dimension.
    """
    return leading_size(x)


def example_keys(key: Any, n: int) -> Any:
    """``n`` independent per-example keys ``jax.random.split(key, n)``, or None."""
    return None if key is None else jax.random.split(key, n)
