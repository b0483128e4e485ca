"""Helpers for streaming reductions over the example axis, chunk by chunk."""

from __future__ import annotations

from typing import Any

import jax
from jax import lax

__all__ = ["batch_size", "example_keys", "slice_rows"]


def batch_size(x: Any) -> int:
    """The leading (example) dimension shared by every leaf of ``x``."""
    sizes = {int(leaf.shape[0]) for leaf in jax.tree.leaves(x)}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share one leading example axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def example_keys(key: Any, n: int) -> Any:
    """``n`` independent per-example keys ``jax.random.split(key, n)``, or None."""
    return None if key is None else jax.random.split(key, n)


def slice_rows(tree: Any, start: Any, size: int) -> Any:
    """Rows ``[start, start + size)`` of every leaf, by ``lax.dynamic_slice_in_dim``.

    Used inside a ``lax.scan`` over chunk indices, so the dataset is read in place: no
    padded or reshaped copy of it is ever made.
    """
    return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, size), tree)
