"""Small pytree utilities used across fnet.

Use the libraries for the rest: ``optax.tree_utils`` (``tree_norm``, ``tree_vdot``,
``tree_add``...) for tree arithmetic and ``jax.tree_util.keystr(path, simple=True,
separator="/")`` for a readable ``"dense_0/w"`` form of a key path.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["cast_floating"]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype``; other leaves unchanged.

    E.g. ``cast_floating(params, jnp.float64)`` for a float64 gradient check. Unlike
    ``optax.tree_utils.tree_cast``, integer, bool and PRNG-key leaves keep their dtype.
    """

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)
