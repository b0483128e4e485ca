"""Weight initializers: ``init(key, shape, dtype) -> array``.

Fans follow the layout fnet's layers use: a Dense weight is ``(fan_in, fan_out)``; a
conv kernel is ``(H, W, C_in, C_out)`` with ``fan_in = H*W*C_in`` and
``fan_out = H*W*C_out``. The default for Dense and Conv2D is :func:`glorot_normal`,
the slides' rule ``W ~ N(0, sigma = sqrt(2 / (fan_in + fan_out)))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

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
    """``(fan_in, fan_out)`` of a weight of ``shape``: ``(in, out)`` or ``(*window, in, out)``."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _normal_with_std(std_fn: Callable[[int, int], float]) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fans(shape)
        return std_fn(fan_in, fan_out) * jax.random.normal(key, tuple(shape), dtype)

    return init


def _uniform_with_std(std_fn: Callable[[int, int], float]) -> Initializer:
    # A uniform on [-a, a] has standard deviation a / sqrt(3).
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fans(shape)
        limit = math.sqrt(3.0) * std_fn(fan_in, fan_out)
        return jax.random.uniform(key, tuple(shape), dtype, -limit, limit)

    return init


def _glorot_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out))


def _he_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / fan_in)


def _lecun_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(1.0 / fan_in)


glorot_normal: Initializer = _normal_with_std(_glorot_std)
glorot_normal.__doc__ = "N(0, sigma^2) with sigma = sqrt(2/(fan_in+fan_out)) (the slides' rule)."
glorot_uniform: Initializer = _uniform_with_std(_glorot_std)
glorot_uniform.__doc__ = "Uniform with the Glorot standard deviation sqrt(2/(fan_in+fan_out))."
he_normal: Initializer = _normal_with_std(_he_std)
he_normal.__doc__ = "N(0, sigma^2) with sigma = sqrt(2/fan_in), for ReLU nets."
he_uniform: Initializer = _uniform_with_std(_he_std)
he_uniform.__doc__ = "Uniform with the He standard deviation sqrt(2/fan_in)."
lecun_normal: Initializer = _normal_with_std(_lecun_std)
lecun_normal.__doc__ = "N(0, sigma^2) with sigma = sqrt(1/fan_in)."
lecun_uniform: Initializer = _uniform_with_std(_lecun_std)
lecun_uniform.__doc__ = "Uniform with the LeCun standard deviation sqrt(1/fan_in)."


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
