"""Weight penalties over a whole params pytree, to add to a loss.

Compose them with a data loss as in the slides' objective
``L = (1/N) sum_i L_i + lambda R(W)``::

    loss = fnet.losses.softmax_cross_entropy(logits, y) + lam * fnet.regularizers.l2(params)

By default only weight matrices and kernels are penalised: leaves named ``"w"``. Biases
(``"b"``) and normalisation parameters (``"scale"``, ``"offset"``) are left alone. Choose
other leaves with ``include``: a collection of leaf names, or a predicate
``include(path, leaf) -> bool`` where ``path`` is the leaf's ``/``-joined key path
(``"dense_0/w"``). Which leaves are penalised depends only on the pytree's structure,
so the choice is made in Python and is free under ``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
from jax.tree_util import keystr, tree_flatten_with_path

__all__ = ["DEFAULT_INCLUDE", "Include", "l1", "l2", "selected_leaves"]

Include: TypeAlias = Collection[str] | Callable[[str, Any], bool]
DEFAULT_INCLUDE: tuple[str, ...] = ("w",)


def selected_leaves(params: Any, include: Include = DEFAULT_INCLUDE) -> dict[str, jax.Array]:
    """The leaves of ``params`` that ``include`` selects, keyed by their path string.

    Args:
      params: any pytree of arrays (typically nested dicts, ``params["dense_0"]["w"]``).
      include: leaf names (the last key of the path, e.g. ``("w",)``), or a predicate
        ``include(path, leaf) -> bool`` with ``path`` like ``"dense_0/w"``.

    Returns:
      ``{path: leaf}`` in pytree order.

    Raises:
      ValueError: ``params`` has leaves but ``include`` selects none of them (a typo in a
        name would otherwise silently turn the penalty off); the message lists the paths.
      TypeError: a selected leaf is not a floating array.
    """
    if isinstance(include, str):
        include = (include,)
    flat, _ = tree_flatten_with_path(params)
    chosen: dict[str, jax.Array] = {}
    for path, leaf in flat:
        name = keystr(path, simple=True, separator="/")
        if callable(include):
            keep = include(name, leaf)
        else:
            keep = bool(path) and keystr(path[-1:], simple=True) in include
        if keep:
            leaf = jnp.asarray(leaf)
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(
                    f"regularizer: leaf '{name}' has dtype {leaf.dtype}; only floating "
                    "leaves can be penalised. Exclude it with `include`."
                )
            chosen[name] = leaf
    if flat and not chosen:
        paths = ", ".join(keystr(p, simple=True, separator="/") for p, _ in flat[:10])
        raise ValueError(
            f"regularizer: include={include!r} selects none of the params' leaves "
            f"({paths}{', ...' if len(flat) > 10 else ''}). Pass include= the weight "
            "names, or a predicate (path, leaf) -> bool."
        )
    return chosen


def _total(terms: list[jax.Array]) -> jax.Array:
    if not terms:
        return jnp.zeros((), jnp.float32)
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def l2(params: Any, *, include: Include = DEFAULT_INCLUDE) -> jax.Array:
    """Sum of squares of the selected leaves: ``R(W) = sum_k sum_l W_kl^2``.

    Exactly the slides' L2 penalty, with no factor 1/2: its gradient is ``2 W``. (For the
    "weight decay" form with gradient ``W`` use ``0.5 * l2(params)``.)

    Args:
      params: pytree of arrays.
      include: which leaves to penalise (default: those named ``"w"``); see
        :func:`selected_leaves`.

    Returns:
      A scalar of the leaves' (promoted) floating dtype: float32 params give float32.
      Empty params give ``0.0`` (float32).
    """
    return _total([jnp.sum(jnp.square(w)) for w in selected_leaves(params, include).values()])


def l1(params: Any, *, include: Include = DEFAULT_INCLUDE) -> jax.Array:
    """Sum of absolute values of the selected leaves: ``R(W) = sum_k sum_l |W_kl|``.

    Args:
      params: pytree of arrays.
      include: which leaves to penalise (default: those named ``"w"``); see
        :func:`selected_leaves`.

    Returns:
      A scalar of the leaves' (promoted) floating dtype. At an entry exactly 0 its
      gradient is JAX's choice for ``|x|``, ``+1``.
    """
    return _total([jnp.sum(jnp.abs(w)) for w in selected_leaves(params, include).values()])
