"""Inverted dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet.core import Model, as_shape, float_input

__all__ = ["Dropout"]


def Dropout(rate: float, *, name: str = "dropout") -> Model:
    """Zero each activation with probability ``rate`` (the DROP probability) when
    ``train=True``, scaling survivors by ``1/(1-rate)``; the identity when ``train=False``.

    Shape and float dtype preserved (integer inputs are cast to float32).
    ``apply(..., train=True)`` needs a ``key``.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(
            f"Dropout: rate is the probability of dropping a unit and must lie in [0, 1), "
            f"got {rate!r}"
        )

    def init(key, input_shape):
        del key
        return as_shape(input_shape, "Dropout"), {}

    def apply(params, x, *, key=None, train=False):
        del params
        x = float_input(x, "Dropout")
        if not train or rate == 0.0:
            return x
        if key is None:
            raise ValueError(
                "Dropout: apply(..., train=True) needs a PRNG key: pass key=jax.random.key(...)"
            )
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))

    return Model(init, apply, name, kind="Dropout", config={"rate": float(rate)})
