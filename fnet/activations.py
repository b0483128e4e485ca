"""Activation functions as pure array functions (elementwise unless stated).

Defaults follow the slides: Leaky ReLU is ``max(0.1 x, x)``. The slides' advice:
"Use ReLU. Be careful with your learning rates"; "Never use sigmoid" (saturated sigmoids
kill gradients: its derivative ``s(1-s)`` is at most 1/4 and vanishes for large ``|x|``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnet.errors import ShapeError

__all__ = [
    "elu",
    "get",
    "leaky_relu",
    "log_softmax",
    "maxout",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


def sigmoid(x: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))``, computed stably; same shape and dtype as ``x``."""
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent; same shape and dtype as ``x``."""
    return jnp.tanh(x)


def relu(x: jax.Array) -> jax.Array:
    """``max(0, x)``; same shape and dtype as ``x``."""
    return jnp.maximum(x, 0)


def leaky_relu(x: jax.Array, alpha: float = 0.1) -> jax.Array:
    """``max(alpha x, x)`` for ``0 <= alpha < 1`` (slides: alpha = 0.1)."""
    return jnp.where(x >= 0, x, alpha * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise (gradient-safe for large x)."""
    safe = jnp.where(x > 0, 0.0, x).astype(x.dtype)
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe))


def maxout(x: jax.Array, pieces: int) -> jax.Array:
    """Max over groups of ``pieces`` consecutive features of the last axis.

    ``x``: ``(..., d * pieces)`` -> ``(..., d)``. Feature ``i`` of the output is
    ``max(x[..., i*pieces : (i+1)*pieces])``.
    """
    if x.shape[-1] % pieces:
        raise ShapeError(
            f"maxout with {pieces} pieces needs a last dimension divisible by {pieces}, "
            f"got shape {x.shape}"
        )
    return jnp.max(x.reshape(*x.shape[:-1], x.shape[-1] // pieces, pieces), axis=-1)


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``, stable for large logits."""
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x_i - logsumexp(x)`` along ``axis``, stable for logits of +-1e4."""
    return jax.nn.log_softmax(x, axis=axis)


_ELEMENTWISE: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
}


def get(name: str) -> Callable[[jax.Array], jax.Array]:
    """Look up an elementwise activation by name (``"relu"``, ``"tanh"``, ...)."""
    if name not in _ELEMENTWISE:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ELEMENTWISE)}")
    return _ELEMENTWISE[name]
