"""Split a batch into equal chunks (padding the last one) for streaming reductions."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["batch_size", "chunk", "example_keys", "unchunk"]


def batch_size(x: Any) -> int:
    """The leading (example) dimension shared by every leaf of ``x``."""
    sizes = {int(leaf.shape[0]) for leaf in jax.tree.leaves(x)}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share one leading example axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def example_keys(key: Any, n: int) -> Any:
    """``n`` independent per-example keys ``jax.random.split(key, n)``, or None."""
    return None if key is None else jax.random.split(key, n)


def chunk(tree: Any, size: int) -> tuple[Any, jax.Array]:
    """Reshape every leaf ``(n, ...)`` to ``(ceil(n/size), size, ...)``.

    The tail is padded with copies of example 0 (so losses stay finite); the returned
    ``(ceil(n/size), size)`` float32 mask is 1 for real examples and 0 for padding.
    """
    n = batch_size(tree)
    n_chunks = -(-n // size)
    pad = n_chunks * size - n

    def one(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0)
        return a.reshape(n_chunks, size, *a.shape[1:])

    mask = (jnp.arange(n_chunks * size) < n).astype(jnp.float32).reshape(n_chunks, size)
    return jax.tree.map(one, tree), mask


def unchunk(a: jax.Array, n: int) -> jax.Array:
    """Inverse of :func:`chunk` for one array: ``(c, size, ...) -> (n, ...)``."""
    return a.reshape(-1, *a.shape[2:])[:n]
