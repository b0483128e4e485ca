"""Activation functions as parameterless layers (shape- and dtype-preserving unless stated).

Float inputs keep their dtype; integer and bool inputs are cast to float32 first
(:func:`fnet.core.float_input`). ``-inf`` inputs are legal (masked scores): every layer
here gives a finite output or the limit value (``LeakyRelu(-inf) = -inf``) and finite
gradients for them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from fnet import activations
from fnet._checks import check_int
from fnet.core import Model, as_shape, float_input
from fnet.errors import ShapeError

__all__ = [
    "Activation",
    "Elu",
    "LeakyRelu",
    "LogSoftmax",
    "Maxout",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Tanh",
]


def _elementwise(
    fn: Callable[[jax.Array], jax.Array], name: str, kind: str, config: dict | None = None
) -> Model:
    def init(key, input_shape):
        del key
        return as_shape(input_shape, name), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        return fn(float_input(x, kind))

    return Model(init, apply, name, kind=kind, config=config or {})


def Relu(*, name: str = "relu") -> Model:
    """``max(0, x)`` elementwise."""
    return _elementwise(activations.relu, name, "Relu")


def Tanh(*, name: str = "tanh") -> Model:
    """``tanh(x)`` elementwise."""
    return _elementwise(activations.tanh, name, "Tanh")


def Sigmoid(*, name: str = "sigmoid") -> Model:
    """``1 / (1 + exp(-x))`` elementwise."""
    return _elementwise(activations.sigmoid, name, "Sigmoid")


def LeakyRelu(alpha: float = 0.1, *, name: str = "leaky_relu") -> Model:
    """``max(alpha x, x)`` elementwise; the slides use ``alpha = 0.1``."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"LeakyRelu: alpha must lie in [0, 1), got {alpha!r}")
    return _elementwise(
        lambda x: activations.leaky_relu(x, alpha), name, "LeakyRelu", {"alpha": float(alpha)}
    )


def Elu(alpha: float = 1.0, *, name: str = "elu") -> Model:
    """``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise."""
    if not alpha > 0:
        raise ValueError(f"Elu: alpha must be positive, got {alpha!r}")
    return _elementwise(lambda x: activations.elu(x, alpha), name, "Elu", {"alpha": float(alpha)})


def Softmax(*, name: str = "softmax") -> Model:
    """Softmax over the last axis: rows sum to 1."""
    return _elementwise(activations.softmax, name, "Softmax")


def LogSoftmax(*, name: str = "log_softmax") -> Model:
    """Log-softmax over the last axis (stable log-probabilities)."""
    return _elementwise(activations.log_softmax, name, "LogSoftmax")


def Maxout(pieces: int = 2, *, name: str = "maxout") -> Model:
    """Max over groups of ``pieces`` features: ``(..., d * pieces) -> (..., d)``.

    Put it after a layer with ``pieces`` times the width you want, e.g.
    ``serial(Dense(2 * 100), Maxout(2))`` gives 100 maxout units of 2 pieces each.

    Raises:
      TypeError: ``pieces`` is not an int. ValueError: ``pieces < 1``.
    """
    pieces = check_int(pieces, "Maxout: pieces", minimum=1)
    desc = f"Maxout({pieces})"

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, desc, min_rank=2)
        if shape[-1] % pieces:
            raise ShapeError(
                f"{desc} needs a last dimension divisible by {pieces}, got input_shape {shape}"
            )
        return (*shape[:-1], shape[-1] // pieces), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        return activations.maxout(float_input(x, desc), pieces)

    return Model(init, apply, name, kind="Maxout", config={"pieces": pieces})


_LAYERS: dict[str, Callable[[], Model]] = {
    "relu": Relu,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "leaky_relu": LeakyRelu,
    "elu": Elu,
}


def Activation(name: str) -> Model:
    """The activation layer called ``name``: one of relu, tanh, sigmoid, leaky_relu, elu."""
    if name not in _LAYERS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(_LAYERS)} "
            "(for maxout use Maxout(pieces))"
        )
    return _LAYERS[name]()
