"""Weight initializers: ``init(key, shape, dtype) -> array``.

Fans follow the layout fnet's layers use: a Dense weight is ``(fan_in, fan_out)``; a
conv kernel is ``(H, W, C_in, C_out)`` with ``fan_in = H*W*C_in`` and
``fan_out = H*W*C_out``. The default for Dense and Conv2D is :func:`glorot_normal`,
the slides' rule ``W ~ N(0, sigma = sqrt(2/(M+N)))`` for a weight of ``M`` inputs and
``N`` outputs.

The six fan-scaled initializers are ``jax.nn.initializers.variance_scaling`` (variance
``scale / fan``) under fnet's names, with the untruncated normal the slides use (JAX's own
``glorot_normal`` truncates at two standard deviations).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp

__all__ = [
    "Initializer",
    "constant",
    "fans",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "zeros",
]

Initializer: TypeAlias = Callable[[jax.Array, Sequence[int], Any], jax.Array]


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape``: ``(in, out)`` or ``(*window, in, out)``.

    For rank >= 2 these are the fans ``jax.nn.initializers.variance_scaling`` uses (the
    initializers below); rank 0 gives ``(1, 1)`` and rank 1 ``(n, n)``.
    """
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


_SHAPES = """

    Args:
      key: a PRNG key. shape: ``(fan_in, fan_out)`` or ``(*window, in, out)``, rank >= 2.
      dtype: a floating dtype (default float32).

    Returns:
      An array of ``shape`` and ``dtype``.

    Raises:
      ValueError: ``shape`` has rank < 2 (no fan-in and fan-out); from
        ``jax.nn.initializers.variance_scaling``.
    """


def _variance_scaling(
    scale: float,
    mode: Literal["fan_in", "fan_avg"],
    distribution: Literal["normal", "uniform"],
    doc: str,
) -> Initializer:
    """``jax.nn.initializers.variance_scaling`` with fnet's (in, out) axes and a docstring."""
    init = jax.nn.initializers.variance_scaling(scale, mode, distribution, dtype=jnp.float32)
    init.__doc__ = doc + _SHAPES
    return init


# (scale, mode): variance = scale / fan, fan = fan_in, or (fan_in + fan_out) / 2 for "fan_avg".
glorot_normal: Initializer = _variance_scaling(
    1.0,
    "fan_avg",
    "normal",
    "``W ~ N(0, sigma^2)``, ``sigma = sqrt(2 / (fan_in + fan_out))``: the slides' rule "
    "(Glorot & Bengio 2010), not truncated.",
)
glorot_uniform: Initializer = _variance_scaling(
    1.0,
    "fan_avg",
    "uniform",
    "``W ~ U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``: the Glorot standard deviation "
    "``sqrt(2 / (fan_in + fan_out))`` (a uniform on [-a, a] has std ``a / sqrt(3)``).",
)
he_normal: Initializer = _variance_scaling(
    2.0,
    "fan_in",
    "normal",
    "``W ~ N(0, sigma^2)``, ``sigma = sqrt(2 / fan_in)``, for ReLU nets (He et al. 2015).",
)
he_uniform: Initializer = _variance_scaling(
    2.0,
    "fan_in",
    "uniform",
    "``W ~ U(-a, a)``, ``a = sqrt(6 / fan_in)``: the He standard deviation ``sqrt(2 / fan_in)``.",
)
lecun_normal: Initializer = _variance_scaling(
    1.0, "fan_in", "normal", "``W ~ N(0, sigma^2)``, ``sigma = sqrt(1 / fan_in)`` (LeCun 1998)."
)
lecun_uniform: Initializer = _variance_scaling(
    1.0,
    "fan_in",
    "uniform",
    "``W ~ U(-a, a)``, ``a = sqrt(3 / fan_in)``: the LeCun standard deviation "
    "``sqrt(1 / fan_in)``.",
)


def normal(stddev: float = 1e-2) -> Initializer:
    """N(0, stddev^2) regardless of fan."""

    def init(key, shape, dtype=jnp.float32):
        return stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


def zeros(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """All zeros (the slides' bias initialization)."""
    del key
    return jnp.zeros(tuple(shape), dtype)


def ones(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """All ones (norm-layer scales)."""
    del key
    return jnp.ones(tuple(shape), dtype)


_BY_NAME: dict[str, Initializer] = {
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
    "ones": ones,
}


def get(init: str | Initializer) -> Initializer:
    """Resolve an initializer given by name (``"he_normal"``) or pass a callable through."""
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    raise ValueError(f"unknown initializer {init!r}; choose one of {sorted(_BY_NAME)}")
