"""Small pytree utilities used across fnet.

Use the libraries for the rest: ``optax.tree_utils`` (``tree_norm``, ``tree_vdot``,
``tree_add``...) for tree arithmetic and ``jax.tree_util.keystr(path, simple=True,
separator="/")`` for a readable ``"dense_0/w"`` form of a key path.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["abstract_args", "abstract_signature", "cast_floating"]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype``; other leaves unchanged.

    E.g. ``cast_floating(params, jnp.float64)`` for a float64 gradient check. Unlike
    ``optax.tree_utils.tree_cast``, integer, bool and PRNG-key leaves keep their dtype.
    """

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def _leaf_key(a: Any) -> tuple[Any, ...]:
    """What compiled code depends on in one argument: shape, dtype, weak type, sharding."""
    if isinstance(a, jax.ShapeDtypeStruct) or (
        isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)
    ):  # PRNG key arrays: no weak_type
        return (a.shape, a.dtype, getattr(a, "weak_type", False), a.sharding)
    # Tracers (no concrete sharding), NumPy arrays, Python scalars: their abstract value.
    aval = jax.typeof(a)
    return (aval.shape, aval.dtype, aval.weak_type, None)


def abstract_signature(*trees: Any) -> tuple[Any, ...]:
    """A hashable key for ``trees``: their structure and each leaf's shape, dtype, weak
    type and sharding (``None`` for non-JAX leaves). Cheap: no tracing, no allocation
    (a ``jax.Array``'s own attributes; ``jax.typeof`` for the rest). What compile caches
    and shape-only decisions key on; :func:`abstract_args` turns it back into
    ``jax.ShapeDtypeStruct`` trees."""
    leaves, treedef = jax.tree.flatten(trees)
    return (treedef, *map(_leaf_key, leaves))


def abstract_args(signature: tuple[Any, ...]) -> Any:
    """The ``trees`` of :func:`abstract_signature`, as a tuple of trees of
    ``jax.ShapeDtypeStruct`` (for ``jax.eval_shape``, ``jit(...).trace``, ``lower``)."""
    structs = [
        jax.ShapeDtypeStruct(shape, dtype, sharding=sharding, weak_type=weak)
        for shape, dtype, weak, sharding in signature[1:]
    ]
    return jax.tree.unflatten(signature[0], structs)
