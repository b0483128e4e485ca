"""Ready-made models: the slides' linear classifier, MLPs and a small AlexNet-style convnet.

All return logits (apply a softmax or use ``fnet.losses.softmax_cross_entropy``).

Mixed precision: ``compute_dtype=jnp.bfloat16`` (or ``jnp.float16``) keeps every param
in float32 (and so their gradients and the optimizer state) but runs each Dense and
Conv2D in that dtype, so activations and the logits come out in it; every
``fnet.losses`` loss casts such logits to float32 and computes the loss in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fnet._checks import check_int
from fnet.combinators import serial
from fnet.core import AnyModel, Model
from fnet.layers import (
    Activation,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Maxout,
    MaxPool,
    Relu,
)

__all__ = ["convnet", "linear", "mlp"]


def linear(n_classes: int, *, w_init: str = "glorot_normal", compute_dtype: Any = None) -> AnyModel:
    """The linear score function ``f(x) = W x + b``: ``(N, ...) -> (N, n_classes)``.

    Inputs are flattened first, so ``(N, 28, 28)`` MNIST images work as they are.
    Params: ``{"dense_0": {"w": (D, n_classes), "b": (n_classes,)}}``.
    ``compute_dtype``: see the module docstring (``None``: compute in float32).
    """
    return serial(
        Flatten(), Dense(n_classes, w_init=w_init, compute_dtype=compute_dtype), name="linear"
    )


def mlp(
    hidden_sizes: Sequence[int],
    n_classes: int,
    activation: str = "relu",
    *,
    maxout_pieces: int = 2,
    dropout: float = 0.0,
    w_init: str = "glorot_normal",
    compute_dtype: Any = None,
) -> AnyModel:
    """A multi-layer perceptron ``(N, ...) -> (N, n_classes)``.

    ``Flatten -> [Dense(h) -> activation (-> Dropout)] * len(hidden_sizes) -> Dense(n_classes)``.
    ``activation`` is relu, tanh, sigmoid, leaky_relu, elu or maxout (then each hidden
    Dense has ``h * maxout_pieces`` units followed by ``Maxout(maxout_pieces)``).
    The slides' 2-layer net is ``mlp([200], 10, "tanh")``; params ``dense_0``, ``dense_1``.
    ``compute_dtype``: see the module docstring (``None``: compute in float32).

    Raises:
      TypeError: a hidden size is not an int. ValueError: a hidden size below 1, or an
        unknown ``activation``.
    """
    sizes = [check_int(h, f"mlp: hidden_sizes[{i}]", minimum=1) for i, h in enumerate(hidden_sizes)]

    def dense(width: int) -> Model:
        return Dense(width, w_init=w_init, compute_dtype=compute_dtype)

    layers: list[Model] = [Flatten()]
    for h in sizes:
        if activation == "maxout":
            layers += [dense(h * maxout_pieces), Maxout(maxout_pieces)]
        else:
            layers += [dense(h), Activation(activation)]
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(dense(n_classes))
    return serial(*layers, name="mlp")


def convnet(
    n_classes: int = 10,
    *,
    channels: Sequence[int] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.0,
    compute_dtype: Any = None,
) -> AnyModel:
    """A small AlexNet-style net for NHWC images such as ``(N, 28, 28, 1)`` or ``(N, 32, 32, 3)``.

    ``[Conv2D(c, 3) -> ReLU -> MaxPool(2)] for c in channels -> Flatten -> Dense(hidden)
    -> ReLU (-> Dropout) -> Dense(n_classes)``; He-normal init for the ReLU layers.
    ``compute_dtype``: see the module docstring (``None``: compute in float32).
    """
    cd = compute_dtype
    layers: list[Model] = []
    for c in channels:
        layers += [Conv2D(c, 3, w_init="he_normal", compute_dtype=cd), Relu(), MaxPool(2)]
    layers += [Flatten(), Dense(hidden, w_init="he_normal", compute_dtype=cd), Relu()]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(n_classes, compute_dtype=cd))
    return serial(*layers, name="convnet")
