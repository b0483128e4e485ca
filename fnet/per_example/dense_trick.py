"""The dense-layer trick: per-example gradient norms from ONE batched backward pass.

For a Dense layer ``z = a W + b`` applied to a batch of flat inputs ``a`` ``(n, d_in)``,
example ``i``'s gradient is ``dW_i = a_i^T delta_i`` and ``db_i = delta_i``, with
``delta_i = dl_i/dz_i`` ``(d_out,)``. The Frobenius norm of an outer product factorises:
``|dW_i|^2 = |a_i|^2 |delta_i|^2``. All ``delta_i`` come from one VJP of the SUM of the
per-example losses with respect to zero "probes" added to every Dense output, so the
norms cost one forward and one backward pass, like the batch gradient itself (which the
same VJP returns).

Applies to :class:`~fnet.per_example.ModelLoss` of a ``fnet.serial`` chain whose children
are Dense layers (on rank-2 inputs) and parameter-free stateless layers (activations,
Flatten, Reshape, pooling, Dropout...). Parameter-free layers are applied to each example
separately (``jax.vmap`` over examples, with the same per-example keys as the vmap path),
so the two paths agree exactly, Dropout included. Anything else raises
:class:`NotEligible` and callers fall back to chunked ``vmap(grad)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fnet.core import Model, Params, layer_key
from fnet.per_example.objective import ModelLoss

__all__ = [
    "NotEligible",
    "centred_moments",
    "dense_chain",
    "factors",
    "outer_grads",
    "weighted_sums",
]


class NotEligible(Exception):
    """The model is not a serial chain of Dense and parameter-free layers."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One child of the chain: its name in params, the layer, and whether it is Dense."""

    name: str
    layer: Model
    dense: bool


def _is_dense(model: Any) -> bool:
    """True for a layer built by ``fnet.Dense`` (it declares ``kind="Dense"``)."""
    return isinstance(model, Model) and model.kind == "Dense"


def _is_serial(model: Any) -> bool:
    """True for a stateless model built by ``fnet.serial`` (``kind="serial"``)."""
    return isinstance(model, Model) and model.kind == "serial" and bool(model.children)


def dense_chain(model: Any) -> tuple[Step, ...] | None:
    """The chain's steps if ``model`` is a stateless ``serial`` of layers, else None.

    Whether every non-Dense step is parameter-free is checked against the params when
    the trick runs (:func:`weighted_sums`).
    """
    if not _is_serial(model):
        return None
    steps = []
    for name, child in model.children:
        if not isinstance(child, Model):
            return None
        steps.append(Step(name, child, _is_dense(child)))
    return tuple(steps)


def _per_example(step: Step, h: jax.Array, keys: Any, train: bool) -> jax.Array:
    """Apply a parameter-free layer to each example on its own (keys as ``serial`` derives)."""

    def one(h_i, k_i):
        k = None if k_i is None else layer_key(k_i, step.name)
        return step.layer.apply({}, h_i[None], key=k, train=train)[0]

    return jax.vmap(one, in_axes=(0, None if keys is None else 0))(h, keys)


def weighted_sums(
    loss_fn: Any,
    params: Params,
    x: jax.Array,
    y: Any,
    weights: jax.Array,
    keys: Any = None,
) -> tuple[Params, jax.Array]:
    """``(sum_i w_i g_i, w_i^2 |g_i|^2)`` by the dense-layer trick.

    Args:
      loss_fn: a :class:`ModelLoss` of an eligible chain (else NotEligible).
      params: the model's params.
      x: inputs ``(n, ...)``; y: labels ``(n, ...)``.
      weights: ``(n,)`` per-example weights ``w_i`` (a 0/1 padding mask, or clip factors).
      keys: per-example PRNG keys ``(n,)`` or None.

    Returns:
      The weighted gradient sum (a pytree like ``params``) and the ``(n,)`` squared
      norms of ``w_i g_i`` in the params' dtype.

    Raises:
      NotEligible: at trace time, if the model or params do not fit the trick.
    """
    g_sum, acts, deltas = _backward(loss_fn, params, x, y, weights, keys)
    terms = [
        # Square in the deltas' float dtype: a uint8 input (MNIST pixels) must not wrap.
        (jnp.sum(jnp.square(acts[name].astype(d.dtype)), axis=-1) + 1.0)
        * jnp.sum(jnp.square(d), axis=-1)
        for name, d in deltas.items()
    ]
    sq = sum(terms[1:], terms[0]) if terms else jnp.zeros(x.shape[:1], weights.dtype)
    return g_sum, sq


def centred_moments(
    loss_fn: Any, params: Params, x: jax.Array, y: Any, keys: Any = None
) -> tuple[Params, jax.Array, jax.Array]:
    """``(G_c, |g_i|^2, sum_i |g_i - G_c|^2)`` of one chunk by the dense-layer trick.

    ``G_c = (1/n) sum_i g_i`` is the chunk's mean gradient. The centred sum is formed
    without the cancelling difference ``sum_i |g_i|^2 - n |G_c|^2`` (which loses every
    digit in float32 when the ``g_i`` share a mean much larger than their spread, e.g.
    inputs with mean 1e4 and std 1). Per Dense layer, with ``a_i = abar + at_i`` and
    ``delta_i = dbar + dt_i`` split into chunk means and centred parts:

    * ``K = abar dbar^T`` and ``u_i = g_i - K = at_i delta_i^T + abar dt_i^T``, so
      ``|u_i|^2 = |at_i|^2 |delta_i|^2 + |abar|^2 |dt_i|^2 + 2 (at_i . abar)(delta_i . dt_i)``,
      a sum of fluctuation-sized terms (no large mean left in it);
    * ``C = G_c - K = (1/n) sum_i at_i dt_i^T`` (one ``(d_in, d_out)`` matmul, the same
      cost as the weight gradient it replaces), so ``G_c`` is ``K + C`` and
      ``sum_i |dW_i - G_c|^2 = sum_i |u_i|^2 - n |C|^2`` (the shift identity);
    * the bias part is ``sum_i |dt_i|^2``, exact.

    The one subtraction left, ``n |C|^2 <= sum_i |u_i|^2`` (``C`` is the mean of the
    ``u_i``), cancels only when the ``u_i`` share a mean much larger than their spread,
    i.e. when the centred factors ``at_i, dt_i`` are strongly and consistently
    correlated; how large ``G``, ``abar`` or ``dbar`` are no longer matters (a shifted
    two-pass sum: Chan, Golub and LeVeque 1983, "Algorithms for computing the sample
    variance").

    Args:
      loss_fn, params, x, y, keys: as in :func:`weighted_sums` (unit weights).

    Returns:
      ``G_c`` (``{layer: {"w", "b"}}`` like ``params``, their dtypes), the ``(n,)``
      squared norms ``|g_i|^2`` and the scalar centred sum, in the deltas' dtype.

    Raises:
      NotEligible: at trace time, if the model or params do not fit the trick.
    """
    n = x.shape[0]
    _, acts, deltas = _backward(loss_fn, params, x, y, jnp.ones((n,), jnp.float32), keys, False)
    mean: dict[str, Any] = {}
    sq_terms, m2_terms = [], []
    for name, d in deltas.items():
        a = acts[name].astype(d.dtype)  # a uint8 input (MNIST pixels) must not wrap
        a_bar, d_bar = jnp.mean(a, axis=0), jnp.mean(d, axis=0)
        a_t, d_t = a - a_bar[None], d - d_bar[None]
        d_tn = d_t / n  # (n, d_out): 1/n folded in before the matmul, not after it
        c = a_t.T @ d_tn
        mean[name] = {
            "w": (jnp.outer(a_bar, d_bar) + c).astype(params[name]["w"].dtype),
            "b": d_bar.astype(params[name]["b"].dtype),
        }
        a2, d2 = jnp.sum(jnp.square(a), axis=-1), jnp.sum(jnp.square(d), axis=-1)
        sq_terms.append((a2 + 1.0) * d2)
        d_t2 = jnp.sum(jnp.square(d_t), axis=-1)
        u2 = (
            jnp.sum(jnp.square(a_t), axis=-1) * d2
            + jnp.sum(jnp.square(a_bar)) * d_t2
            + 2.0 * (a_t @ a_bar) * jnp.sum(d * d_t, axis=-1)
        )
        m2_terms.append(jnp.sum(u2) - n * _sq_frobenius(a_t, d_tn, c) + jnp.sum(d_t2))
    if not sq_terms:
        return mean, jnp.zeros((n,), jnp.float32), jnp.zeros((), jnp.float32)
    return mean, sum(sq_terms[1:], sq_terms[0]), sum(m2_terms[1:], m2_terms[0])


def _sq_frobenius(a: jax.Array, d: jax.Array, c: jax.Array) -> jax.Array:
    """``|c|^2`` for ``c = a.T @ d`` (``a`` ``(n, d_in)``, ``d`` ``(n, d_out)``).

    For a small chunk (``n^2 (d_in + d_out) <= 8 d_in d_out``) from the two ``(n, n)``
    Gram matrices, ``sum((a a^T) * (d d^T))``: a few small matmuls instead of another
    pass over the ``(d_in, d_out)`` matrix, which costs more than they do at ``n = 32``
    for a 784x200 layer (the per-chunk cost of ``stats``, issue 10). Otherwise
    ``sum(c**2)``.
    """
    n, d_in = a.shape
    d_out = d.shape[1]
    if n * n * (d_in + d_out) <= 8 * d_in * d_out:
        return jnp.sum((a @ a.T) * (d @ d.T))
    return jnp.sum(jnp.square(c))


def _backward(loss_fn, params, x, y, weights, keys, with_sum=True):
    """One VJP: ``(sum_i w_i g_i, Dense inputs {name: (n, d_in)}, deltas {name: (n, d_out)})``.

    With ``with_sum=False`` only the deltas are differentiated (no weight-gradient
    matmul) and the first item is None.
    """
    if not isinstance(loss_fn, ModelLoss):
        raise NotEligible("the dense trick needs a ModelLoss (fnet.per_example.model_loss)")
    steps = dense_chain(loss_fn.model)
    if steps is None:
        raise NotEligible("the model is not a stateless fnet.serial chain")
    dense = [s.name for s in steps if s.dense]
    extra = sorted(set(params) - set(dense))
    if extra:
        raise NotEligible(f"layers {extra} have params but are not Dense")
    n = x.shape[0]
    probes = {
        name: jnp.zeros((n, params[name]["b"].shape[0]), params[name]["b"].dtype)
        for name in dense
        if name in params
    }

    def total(p, probes):
        h, acts = x, {}
        for step in steps:
            if step.dense:
                if h.ndim != 2:
                    raise NotEligible(f"{step.name} gets inputs of rank {h.ndim}, not 2")
                acts[step.name] = h
                h = step.layer.apply(p[step.name], h) + probes[step.name]
            else:
                h = _per_example(step, h, keys, loss_fn.train)
        losses = jax.vmap(lambda o, t: loss_fn.loss(o[None], t[None]))(h, y)
        return jnp.sum(weights.astype(losses.dtype) * losses), acts

    if not with_sum:
        (_, acts), deltas = jax.value_and_grad(total, argnums=1, has_aux=True)(params, probes)
        return None, acts, deltas
    (_, acts), (g_sum, deltas) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        params, probes
    )
    return g_sum, acts, deltas


def outer_grads(
    loss_fn: ModelLoss, params: Params, x: jax.Array, y: Any, keys: Any = None
) -> Params:
    """Materialised per-example gradients as outer products ``a_i^T delta_i`` (one VJP).

    Same result as ``jax.vmap(jax.grad(...))`` for an eligible chain, but with one batched
    backward pass and one write of the ``(n, d_in, d_out)`` buffers.
    """
    n = x.shape[0]
    _, acts, deltas = _backward(loss_fn, params, x, y, jnp.ones((n,), jnp.float32), keys)
    return {
        name: {"w": jnp.einsum("ni,no->nio", acts[name].astype(d.dtype), d), "b": d}
        for name, d in deltas.items()
    }


def factors(
    loss_fn: ModelLoss, params: Params, x: jax.Array, y: Any, keys: Any = None
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The trick's factors: Dense inputs ``{name: (n, d_in)}`` and output gradients
    ``{name: (n, d_out)}`` of each example's loss, so that ``g_i`` of layer ``name`` is
    ``w: outer(a_i, delta_i)``, ``b: delta_i``. Inner products follow:
    ``<g_i, g_j> = sum_layers (a_i . a_j + 1)(delta_i . delta_j)`` (a Gram matrix).
    """
    n = x.shape[0]
    _, acts, deltas = _backward(loss_fn, params, x, y, jnp.ones((n,), jnp.float32), keys)
    return acts, deltas
