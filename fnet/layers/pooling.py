"""Max and average pooling over NHWC images."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fnet.core import Model, as_shape, check_input
from fnet.errors import ShapeError
from fnet.layers.conv import _padding, _pair

__all__ = ["AvgPool", "MaxPool"]


def _pool(kind: str, window, strides, padding: str, name: str) -> Model:
    desc = f"{kind}({window})"
    win = _pair(window, "window", desc)
    stride = _pair(strides if strides is not None else window, "strides", desc)
    pad = _padding(padding, desc)
    dims, steps = (1, *win, 1), (1, *stride, 1)

    def pool(x):
        if kind == "MaxPool":
            return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, pad)
        sums = lax.reduce_window(x, 0.0, lax.add, dims, steps, pad)
        # Average over the window's real (unpadded) entries only.
        counts = lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype), 0.0, lax.add, win, stride, pad)
        return sums / counts[None, :, :, None]

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, desc, min_rank=4)
        if len(shape) != 4:
            raise ShapeError(f"{desc} expects an NHWC input_shape of rank 4, got {shape}")
        out = jax.eval_shape(pool, jax.ShapeDtypeStruct((1, *shape[1:]), jnp.float32)).shape
        return (shape[0], *out[1:]), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        check_input(x, desc, rank=4)
        return pool(x)

    config = {"window": list(win), "strides": list(stride), "padding": pad}
    return Model(init, apply, name, kind=kind, config=config)


def MaxPool(
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: str = "VALID",
    *,
    name: str = "maxpool",
) -> Model:
    """Max over ``window`` patches: ``(N, H, W, C) -> (N, H', W', C)``; strides default to
    the window (non-overlapping)."""
    return _pool("MaxPool", window, strides, padding, name)


def AvgPool(
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: str = "VALID",
    *,
    name: str = "avgpool",
) -> Model:
    """Mean over ``window`` patches: ``(N, H, W, C) -> (N, H', W', C)``; with SAME padding
    the mean is over the real (unpadded) entries of each window."""
    return _pool("AvgPool", window, strides, padding, name)
