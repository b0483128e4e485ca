"""Gradient-noise statistics over a dataset, streamed chunk by chunk.

Definitions (``N`` examples, ``g_i`` example ``i``'s gradient, ``l_i`` its loss):

* ``G = (1/N) sum_i g_i``: the full-batch gradient of the MEAN loss.
* ``Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T`` (population normalisation), so
  ``tr(Sigma) = (1/N) sum_i |g_i - G|^2`` (``= mean_i |g_i|^2 - |G|^2`` in exact
  arithmetic, but that difference cancels catastrophically in float32 when the ``g_i``
  share a mean much larger than their spread). Computed in one streaming pass inside one
  ``lax.scan``: each chunk's mean and centred sum, merged by Chan, Golub and LeVeque's
  pairwise update (:func:`fnet.per_example.gradients.stream_moments`).
* ``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al. 2018, eq. 2.8).
* ``B_noise = tr(H Sigma) / (G^T H G)`` with ``H`` the Hessian of the mean loss
  (eq. 2.7). Estimator: ``tr(H Sigma) = mean_i (g_i - G)^T H (g_i - G)``, with the mean over
  ``M`` examples sampled without replacement and ``H`` the Hessian of the mean loss on
  ``K`` other sampled examples, applied by Hessian-vector products
  (``jax.jvp(jax.grad(L))``). Unbiased for ``tr(H_K Sigma)`` given ``H_K`` (each sampled
  ``g_i`` has expectation ``G``); its noise falls as ``1/sqrt(M)``, and it can come out
  negative when ``M`` is small or ``H_K`` is indefinite. Centred before the
  Hessian-vector product, so no large ``G^T H G`` is subtracted.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh

from fnet import distributed
from fnet._checks import check_int
from fnet.core import Params
from fnet.losses import BatchReduction
from fnet.per_example.chunking import batch_size, example_keys
from fnet.per_example.gradients import (
    Method,
    _vmap_grads,
    check_chunk_size,
    choose_path,
    stream_moments,
)
from fnet.per_example.objective import (
    LossFn,
    ModelLoss,
    as_loss_fn,
    call_loss,
    check_reduction,
)
from fnet.per_example.sampling import Sampling, expected_cosine, minibatch_variance

__all__ = ["GradientStats", "stats"]


class GradientStats(NamedTuple):
    """Per-example gradient statistics of a dataset (scalars are 0-d arrays).

    Attributes:
      n: ``N``, the number of examples (Python int).
      grad: ``G``, the mean gradient (pytree like params).
      grad_sq_norm: ``|G|^2``.
      mean_sq_norm: ``mean_i |g_i|^2``.
      trace_cov: ``tr(Sigma) = (1/N) sum_i |g_i - G|^2`` (1/N normalisation; computed
        centred, so it stays accurate where ``mean_sq_norm - grad_sq_norm`` would cancel).
      b_simple: ``tr(Sigma) / |G|^2``.
      sq_norms: ``(N,)`` the per-example ``|g_i|^2``.
      trace_h_cov: ``tr(H Sigma)`` estimate, or NaN if not computed.
      g_h_g: ``G^T H G``, or NaN.
      b_noise: ``tr(H Sigma) / G^T H G``, or NaN.
      method: ``"dense"`` or ``"vmap"``: the path that computed the norms.
    """

    n: int
    grad: Params
    grad_sq_norm: jax.Array
    mean_sq_norm: jax.Array
    trace_cov: jax.Array
    b_simple: jax.Array
    sq_norms: jax.Array
    trace_h_cov: jax.Array
    g_h_g: jax.Array
    b_noise: jax.Array
    method: str

    def minibatch_variance(self, batch_size: float, sampling: Sampling) -> jax.Array:
        """``E|g_hat - G|^2`` of a size-``B`` mini-batch mean gradient; see
        :func:`fnet.per_example.minibatch_variance` (``tr(Sigma)/B``, times
        ``(N-B)/(N-1)`` without replacement)."""
        return minibatch_variance(self.trace_cov, self.grad_sq_norm, self.n, batch_size, sampling)

    def expected_cosine(self, batch_size: float, sampling: Sampling) -> jax.Array:
        """Approximate expected cosine between a size-``B`` mini-batch gradient and ``G``."""
        return expected_cosine(self.trace_cov, self.grad_sq_norm, self.n, batch_size, sampling)

    def summary(self) -> dict[str, float | int | str]:
        """The scalar statistics as plain Python numbers (for metrics.json)."""
        return {
            "n": self.n,
            "grad_sq_norm": float(self.grad_sq_norm),
            "mean_sq_norm": float(self.mean_sq_norm),
            "trace_cov": float(self.trace_cov),
            "b_simple": float(self.b_simple),
            "trace_h_cov": float(self.trace_h_cov),
            "g_h_g": float(self.g_h_g),
            "b_noise": float(self.b_noise),
            "method": self.method,
        }


@functools.partial(jax.jit, static_argnames=("loss_fn", "method", "chunk_size"))
def _moments(loss_fn, params, x, y, key, state, method, chunk_size):
    n = batch_size(x)
    keys = example_keys(key, n)
    grad, sq, m2 = stream_moments(loss_fn, params, state, x, y, keys, method, chunk_size)
    g2 = optax.tree_utils.tree_norm(grad, squared=True)
    trace = m2 / n
    # b_simple and the NaN placeholders come out of the one compiled call: computed on
    # the host they were two more dispatches (~0.1 ms of a 0.4 ms call at chunk 32).
    return grad, g2, jnp.mean(sq), trace, sq, trace / g2, jnp.full((), jnp.nan, g2.dtype)


@functools.partial(jax.jit, static_argnames=("loss_fn", "reduction", "m", "k"))
def _hessian_terms(loss_fn, params, grad, x, y, key, state, sample_key, reduction, m, k):
    n = batch_size(x)
    perm = jax.random.permutation(sample_key, n)
    idx_g, idx_h = perm[:m], perm[m : m + k] if m + k <= n else perm[-k:]
    take = lambda t, idx: jax.tree.map(lambda a: a[idx], t)
    keys = example_keys(key, n)
    k_h = None if key is None else jax.random.fold_in(key, 1)
    scale = 1.0 / k if reduction == "sum" else 1.0

    def mean_loss(p):
        return call_loss(loss_fn, p, take(x, idx_h), take(y, idx_h), k_h, state) * scale

    def hvp(v):
        return jax.jvp(jax.grad(mean_loss), (params,), (v,))[1]

    g_h_g = optax.tree_utils.tree_vdot(grad, hvp(grad))
    g = _vmap_grads(loss_fn, params, state, take(x, idx_g), take(y, idx_g), take(keys, idx_g))
    centred = jax.tree.map(lambda a, b: a - b[None], g, grad)
    quad = lax.map(lambda v: optax.tree_utils.tree_vdot(v, hvp(v)), centred, batch_size=min(m, 8))
    trace_h_cov = jnp.mean(quad)
    return trace_h_cov, g_h_g


def stats(
    loss_fn: LossFn,
    params: Params,
    x: Any,
    y: Any,
    *,
    key: Any = None,
    state: Any = None,
    method: Method = "auto",
    chunk_size: int | None = None,
    hessian_examples: int = 0,
    hessian_batch: int = 1024,
    hessian_key: jax.Array | None = None,
    reduction: BatchReduction | None = None,
    mesh: Mesh | None = None,
) -> GradientStats:
    """Gradient statistics of ``loss_fn`` over the dataset ``x, y`` (see module docstring).

    Streams over chunks of ``chunk_size`` examples inside one compiled ``lax.scan``, so
    no more than one chunk of per-example gradients exists at a time (none at all on the
    dense-trick path). Sums are accumulated in the params' dtype; ``tr(Sigma)`` is
    accumulated centred (per-chunk centred sums merged by Chan's update), so it keeps its
    relative precision when ``|G|^2 >> tr(Sigma)``.

    Args:
      loss_fn, params, x, y, key, state, method, chunk_size: as in
        :func:`fnet.per_example.norms`.
      hessian_examples: ``M``; if > 0 also estimate ``B_noise`` (``M`` per-example
        gradients and ``M + 1`` Hessian-vector products over ``hessian_batch`` examples).
      hessian_batch: ``K``, examples defining ``H`` (capped at ``N - M``, or ``N``).
      hessian_key: PRNG key choosing the ``M`` and ``K`` examples (required if ``M > 0``).
      reduction: how ``loss_fn`` combines a batch (``"mean"``/``"sum"``), used to build
        the mean loss for ``H``. Default: ``loss_fn.reduction`` for a ModelLoss, else
        ``"mean"``.
      mesh: a ``jax.sharding.Mesh``: the examples are split over its data axis
        (:func:`fnet.distributed.shard_examples`; ``N`` must be divisible by the
        data-axis size; already-global arrays are kept), params, state and keys
        replicated; the compiled computation follows those shardings. Same numbers as
        without a mesh, to float rounding.

    Returns:
      :class:`GradientStats`.

    Raises:
      TypeError, ValueError: ``chunk_size``, ``hessian_examples`` or ``hessian_batch`` is
        not an int (``chunk_size >= 1`` or ``None``, ``hessian_examples >= 0``,
        ``hessian_batch >= 1``); ``hessian_examples > 0`` without a ``hessian_key``; an
        unknown ``method`` or ``reduction``; with ``mesh``, ``N`` not divisible by the
        data-axis size.
    """
    loss_fn = as_loss_fn(loss_fn)
    chunk_size = check_chunk_size(chunk_size)
    hessian_examples = check_int(hessian_examples, "hessian_examples", minimum=0)
    hessian_batch = check_int(hessian_batch, "hessian_batch", minimum=1)
    if mesh is not None:
        (x, y), (params, key, state, hessian_key) = distributed.shard_examples(
            (x, y), (params, key, state, hessian_key), mesh
        )
    n = batch_size(x)
    path = choose_path(loss_fn, params, x, y, key, state, method)
    grad, g2, mean_sq, trace, sq, b_simple, nan = _moments(
        loss_fn, params, x, y, key, state, path, chunk_size
    )
    trace_h, ghg, b_noise = nan, nan, nan
    if hessian_examples > 0:
        if hessian_key is None:
            raise ValueError("hessian_examples > 0 needs a hessian_key")
        if reduction is None:
            reduction = loss_fn.reduction if isinstance(loss_fn, ModelLoss) else "mean"
        check_reduction(reduction)
        m = min(hessian_examples, n)
        k = max(1, min(hessian_batch, n - m if n > m else n))
        trace_h, ghg = _hessian_terms(
            loss_fn, params, grad, x, y, key, state, hessian_key, reduction, m, k
        )
        b_noise = trace_h / ghg
    return GradientStats(
        n=n,
        grad=grad,
        grad_sq_norm=g2,
        mean_sq_norm=mean_sq,
        trace_cov=trace,
        b_simple=b_simple,
        sq_norms=sq,
        trace_h_cov=trace_h,
        g_h_g=ghg,
        b_noise=b_noise,
        method=path,
    )
