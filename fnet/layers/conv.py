"""2-D convolution over NHWC images."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnet import initializers
from fnet._checks import check_int
from fnet.core import (
    Model,
    as_shape,
    broadcast_features,
    check_input,
    check_param_shapes,
    compute_dtype_of,
    describe_initializer,
    float_input,
)
from fnet.errors import ShapeError

__all__ = ["Conv2D"]


def _pair(value: int | Sequence[int], what: str, layer: str) -> tuple[int, int]:
    """``(value, value)`` for an int, else the pair; every entry an int >= 1."""
    if isinstance(value, (int, np.integer)):  # a bool too: check_int names it
        a = b = check_int(value, f"{layer}: {what}", minimum=1)
        return a, b
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{layer}: {what} must be an int >= 1 or a pair of them, got {value!r}")
    a, b = (check_int(v, f"{layer}: {what}[{i}]", minimum=1) for i, v in enumerate(value))
    return a, b


def _padding(padding: str, layer: str) -> str:
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"{layer}: padding must be 'SAME' or 'VALID', got {padding!r}")
    return padding.upper()


def Conv2D(
    features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: str = "SAME",
    *,
    w_init: str | initializers.Initializer = "glorot_normal",
    b_init: str | initializers.Initializer = "zeros",
    param_dtype: jnp.dtype = jnp.float32,
    compute_dtype: jnp.dtype | None = None,
    name: str = "conv2d",
) -> Model:
    """2-D convolution: ``(N, H, W, C_in) -> (N, H', W', features)`` (NHWC).

    Params: ``{"w": (kh, kw, C_in, features), "b": (features,)}`` (HWIO kernel).
    ``padding="SAME"`` keeps ``H' = ceil(H / stride)``; ``"VALID"`` gives
    ``H' = floor((H - kh) / stride) + 1``.

    Dtypes: integer or bool inputs are cast to the params' dtype first; float inputs
    and params are computed in their promoted dtype. ``compute_dtype`` (mixed
    precision, e.g. ``jnp.bfloat16``): params (and their gradients) stay
    ``param_dtype``, the convolution runs in ``compute_dtype`` and so does the output.

    Raises:
      TypeError: ``features`` not an int, ``kernel_size``/``strides`` not an int or a
        pair of ints (``True`` and ``2.0`` are not ints).
      ValueError: ``features``, ``kernel_size`` or ``strides`` below 1; a bad ``padding``
        or ``compute_dtype``.
      ShapeError: from ``init``, a VALID kernel larger than the (padded) input, i.e. an
        empty output; from ``apply``, params whose shapes do not fit the configuration
        (``(kh, kw, C_in, features)`` and ``(features,)``) or inputs that do not fit them.
    """
    features = check_int(features, "Conv2D: features", minimum=1)
    desc = f"Conv2D({features}, {kernel_size})"
    kernel = _pair(kernel_size, "kernel_size", desc)
    stride = _pair(strides, "strides", desc)
    pad = _padding(padding, desc)
    w_fn, b_fn = initializers.get(w_init), initializers.get(b_init)
    cdtype = compute_dtype_of(compute_dtype, desc)

    def conv(params, x):
        w, b = params["w"], params["b"]
        dtype = cdtype if cdtype is not None else jnp.promote_types(x.dtype, w.dtype)
        x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        y = lax.conv_general_dilated(x, w, stride, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + broadcast_features(b, y.ndim)

    def init(key, input_shape):
        shape = as_shape(input_shape, desc, min_rank=4)
        if len(shape) != 4:
            raise ShapeError(f"{desc} expects an NHWC input_shape of rank 4, got {shape}")
        k_w, k_b = jax.random.split(key)
        params = {
            "w": w_fn(k_w, (*kernel, shape[-1], features), param_dtype),
            "b": b_fn(k_b, (features,), param_dtype),
        }
        x = jax.ShapeDtypeStruct((1, *shape[1:]), param_dtype)
        out = jax.eval_shape(conv, params, x).shape
        if min(out[1:3]) <= 0:
            raise ShapeError(
                f"{desc}: the {kernel} kernel ({pad} padding) does not fit inside inputs of "
                f"spatial size {shape[1:3]}, so the output would be empty {tuple(out[1:])}; "
                "use a smaller kernel, padding='SAME', or larger inputs"
            )
        return (shape[0], *out[1:]), params

    def apply(params, x, *, key=None, train=False):
        del key, train
        check_param_shapes(params, {"w": (*kernel, None, features), "b": (features,)}, desc)
        x = float_input(x, desc, params["w"].dtype)
        check_input(x, desc, rank=4, last=params["w"].shape[2])
        if pad == "VALID" and (x.shape[1] < kernel[0] or x.shape[2] < kernel[1]):
            raise ShapeError(
                f"{desc}: the {kernel} VALID kernel does not fit inside inputs of shape "
                f"{x.shape}; use a smaller kernel, padding='SAME', or larger inputs"
            )
        return conv(params, x)

    config = {
        "features": features,
        "kernel_size": list(kernel),
        "strides": list(stride),
        "padding": pad,
        "w_init": describe_initializer(w_init),
        "b_init": describe_initializer(b_init),
        "param_dtype": jnp.dtype(param_dtype).name,
        "compute_dtype": None if cdtype is None else cdtype.name,
    }
    return Model(init, apply, name, kind="Conv2D", config=config)
