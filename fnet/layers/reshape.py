"""Layers that only change an array's shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fnet.core import Model, as_shape
from fnet.errors import ShapeError

__all__ = ["Flatten", "Reshape"]


def Flatten(*, name: str = "flatten") -> Model:
    """Flatten all but the batch axis: ``(N, d1, d2, ...) -> (N, d1*d2*...)``.

    Any dtype, kept as is (no arithmetic: ``uint8`` pixels stay exact ``uint8``).
    """

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, "Flatten", min_rank=1)
        return (shape[0], math.prod(shape[1:])), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        return x.reshape(x.shape[0], -1)

    return Model(init, apply, name, kind="Flatten")


def Reshape(shape: Sequence[int], *, name: str = "reshape") -> Model:
    """Reshape each example: ``(N, *in) -> (N, *shape)``; e.g. ``Reshape((28, 28, 1))``.

    Any dtype, kept as is (no arithmetic).
    """
    target = tuple(int(d) for d in shape)
    if any(d <= 0 for d in target):
        raise ValueError(f"Reshape: every target dimension must be positive, got {shape!r}")
    desc = f"Reshape({target})"

    def check(in_shape):
        if math.prod(in_shape[1:]) != math.prod(target):
            raise ShapeError(
                f"{desc} cannot reshape inputs of shape {tuple(in_shape)}: each example has "
                f"{math.prod(in_shape[1:])} values, the target {target} needs {math.prod(target)}"
            )

    def init(key, input_shape):
        del key
        in_shape = as_shape(input_shape, desc, min_rank=1)
        check(in_shape)
        return (in_shape[0], *target), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        check(x.shape)
        return x.reshape(x.shape[0], *target)

    return Model(init, apply, name, kind="Reshape", config={"shape": list(target)})
