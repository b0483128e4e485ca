"""Mini-batch sampling schemes and the variance of the mini-batch gradient they give.

Population: ``N`` per-example gradients ``g_i`` with mean ``G = (1/N) sum_i g_i`` and
covariance with the POPULATION normalisation ``Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T``,
so ``tr(Sigma) = mean_i |g_i|^2 - |G|^2``. Every estimator below is unbiased,
``E[g_hat] = G``; its variance is ``V = E|g_hat - G|^2``:

* ``"with_replacement"``: ``B`` indices i.i.d. uniform, ``g_hat = (1/B) sum_b g_{I_b}``:
  ``V = tr(Sigma) / B``.
* ``"without_replacement"`` (a shuffled epoch's batches): ``B`` distinct indices:
  ``V = tr(Sigma)/B * (N - B)/(N - 1)``, zero at ``B = N``. Derivation: for distinct
  draws ``a != b``, ``Cov(g_{I_a}, g_{I_b}) = c`` is the same for every pair; summing all
  ``N`` draws gives the constant ``N G``, so ``0 = Var(sum_i g_i) = N Sigma + N(N-1) c``,
  ``c = -Sigma/(N-1)``. Then ``Var(sum_b g_{I_b}) = B Sigma + B(B-1) c
  = B Sigma (N-B)/(N-1)``; divide by ``B^2`` and take the trace.
* ``"poisson"``: each example joins independently with probability ``q = B/N`` (``B`` is
  the EXPECTED batch size) and ``g_hat = (1/B) sum_{i in S} g_i`` (fixed denominator, as
  in DP-SGD): ``V = (1-q)/(q N^2) sum_i |g_i|^2 = (1-q)/B (tr(Sigma) + |G|^2)``.
"""

from __future__ import annotations

import functools
from typing import Literal, TypeAlias

import jax
import jax.numpy as jnp

__all__ = ["SAMPLINGS", "Sampling", "expected_cosine", "minibatch_variance", "sample_batch"]

Sampling: TypeAlias = Literal["with_replacement", "without_replacement", "poisson"]
SAMPLINGS = ("with_replacement", "without_replacement", "poisson")


def check_sampling(sampling: str) -> None:
    """Raise ``ValueError`` unless ``sampling`` is one of :data:`SAMPLINGS`."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")


def _check_size(n: int, batch_size: float, sampling: str) -> None:
    if not 0 < batch_size:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    if sampling != "with_replacement" and batch_size > n:
        raise ValueError(f"{sampling}: batch_size {batch_size} exceeds the population {n}")


def minibatch_variance(
    trace_cov: jax.Array | float,
    grad_sq_norm: jax.Array | float,
    n: int,
    batch_size: float,
    sampling: Sampling,
) -> jax.Array:
    """``E|g_hat - G|^2`` of a size-``batch_size`` mini-batch gradient (formulas above).

    Args:
      trace_cov: ``tr(Sigma)`` with the 1/N normalisation (scalar).
      grad_sq_norm: ``|G|^2`` (scalar; used by ``"poisson"`` only).
      n: the population size ``N``.
      batch_size: ``B`` (the expected size for ``"poisson"``).
      sampling: ``"with_replacement"``, ``"without_replacement"`` or ``"poisson"``.

    Returns:
      A scalar of ``trace_cov``'s type and dtype (works on floats, NumPy and JAX arrays).
    """
    check_sampling(sampling)
    _check_size(n, batch_size, sampling)
    if sampling == "with_replacement":
        return trace_cov / batch_size  # type: ignore[return-value]
    if sampling == "without_replacement":
        fpc = (n - batch_size) / (n - 1) if n > 1 else 0.0
        return trace_cov * (fpc / batch_size)  # type: ignore[return-value]
    q = batch_size / n
    return (trace_cov + grad_sq_norm) * ((1.0 - q) / batch_size)  # type: ignore[return-value]


def expected_cosine(
    trace_cov: jax.Array | float,
    grad_sq_norm: jax.Array | float,
    n: int,
    batch_size: float,
    sampling: Sampling,
) -> jax.Array:
    """Approximate ``E[cos(g_hat, G)] ~ |G| / sqrt(|G|^2 + V)`` with ``V`` the variance.

    The ratio of expectations ``E<g_hat, G> / (|G| sqrt(E|g_hat|^2))`` (``E<g_hat, G> =
    |G|^2``, ``E|g_hat|^2 = |G|^2 + V``); by Jensen it is a lower bound on the mean
    cosine when ``|g_hat|`` varies little. Scalar, in [0, 1].
    """
    v = minibatch_variance(trace_cov, grad_sq_norm, n, batch_size, sampling)
    return (grad_sq_norm / (grad_sq_norm + v)) ** 0.5  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def sample_batch(
    key: jax.Array, n: int, batch_size: int, sampling: Sampling
) -> tuple[jax.Array, jax.Array]:
    """Draw one mini-batch as ``(indices, weights)``; ``g_hat = sum_j weights_j g_{indices_j}``.

    ``"with_replacement"`` / ``"without_replacement"``: ``batch_size`` int32 indices and
    weights ``1/B``. ``"poisson"``: all ``n`` indices (a static shape) with weights
    ``1/B`` for the included examples and ``0`` for the others. Weights are float32.
    ``n``, ``batch_size`` and ``sampling`` are static (one compiled function each).
    """
    check_sampling(sampling)
    _check_size(n, batch_size, sampling)
    inv = jnp.float32(1.0 / batch_size)
    if sampling == "with_replacement":
        idx = jax.random.randint(key, (batch_size,), 0, n, jnp.int32)
        return idx, jnp.full((batch_size,), inv)
    if sampling == "without_replacement":
        idx = jax.random.permutation(key, n)[:batch_size].astype(jnp.int32)
        return idx, jnp.full((batch_size,), inv)
    keep = jax.random.bernoulli(key, batch_size / n, (n,))
    return jnp.arange(n, dtype=jnp.int32), jnp.where(keep, inv, jnp.float32(0.0))
