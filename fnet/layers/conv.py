"""2-D convolution over NHWC images.

Every convolution fnet emits, its two gradient convolutions included, is in XLA:CPU's
*canonical* form (input NHWC, kernel HWIO, output NHWC, no window reversal), the only form
XLA:CPU runs with its fast (Eigen) convolution kernel. XLA:CPU rewrites other forms into the
canonical one only in the entry computation (its ``ConvCanonicalization`` pass), not inside a
``while`` loop: JAX's own gradient rules give ``f01b_i01o->01bf`` (weight gradient) and
``NHWC, HWOI`` (input gradient) convolutions, which inside ``lax.scan`` ran through a naive
loop ~10x slower, rounded differently from the same step in straight-line code, and made a
rolled scan of convolutional training steps ~10x slower than one step per call
(``docs/performance.md``). :func:`conv_nhwc` writes the gradients itself (a custom JVP
whose tangent convolutions transpose to canonical convolutions), so a step compiles to the
same convolutions inside a loop and outside it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

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

__all__ = ["Conv2D", "conv_nhwc"]

Pads = tuple[tuple[int, int], ...]


def conv_nhwc(
    x: jax.Array, w: jax.Array, strides: Sequence[int], padding: str | Sequence[tuple[int, int]]
) -> jax.Array:
    """Cross-correlation of NHWC images with an HWIO kernel; gradients in canonical form.

    The values are ``lax.conv_general_dilated(x, w, strides, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``; forward- and reverse-mode derivatives
    (and so Hessian-vector products, ``vmap``'d per-example gradients) equal its own.
    What differs is how the gradients are written: both gradient convolutions are
    canonical (NHWC/HWIO/NHWC) convolutions of transposed operands, which XLA:CPU runs
    with its fast kernel inside ``while`` loops too (see the module docstring).

    Args:
      x: ``(N, H, W, C_in)`` images, a float dtype (the same as ``w``).
      w: ``(kh, kw, C_in, C_out)`` kernel.
      strides: ``(sh, sw)``, ints >= 1.
      padding: ``"SAME"``, ``"VALID"`` or explicit ``((top, bottom), (left, right))``.

    Returns:
      ``(N, H', W', C_out)`` in the dtype of ``x``.

    Raises:
      TypeError, ValueError: from ``lax.conv_general_dilated`` for operands that do not
        fit (checked by the callers, :func:`Conv2D`, with clearer messages).
    """
    strides = tuple(int(s) for s in strides)
    pads: Sequence[tuple[int, int]] = (
        lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
        if isinstance(padding, str)
        else padding
    )
    return _conv(x, w, strides, tuple((int(lo), int(hi)) for lo, hi in pads))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_jvp(strides: tuple[int, ...], pads: Pads, primals, tangents):
    """Tangents written so that JAX's transposes of them are canonical convolutions.

    ``d/dx``: ``conv(dx, w)`` with the kernel passed as ``(kh, kw, C_out, C_in)`` (spec
    ``HWOI``): its transpose in ``dx`` is a convolution with spec ``HWIO``.
    ``d/dw``: ``conv(x, dw)`` on ``x`` as ``(C_in, H, W, N)`` (spec ``CHWN``), ``dw`` as
    ``(C_in, kh, kw, C_out)`` (``IHWO``) and the output as ``(H', W', N, C_out)``
    (``HWNC``): its transpose in ``dw`` is the NHWC/HWIO/NHWC convolution of ``x``
    (batch and channels swapped) with the output gradient (as ``(H', W', N, C_out)``),
    i.e. the weight gradient in the canonical form XLA:CPU would otherwise produce with
    transposes in the entry computation only.
    """
    x, w = primals
    dx, dw = tangents
    y = _conv(x, w, strides, pads)
    out = None
    if not isinstance(dx, SymbolicZero):
        out = lax.conv_general_dilated(
            dx, jnp.transpose(w, (0, 1, 3, 2)), strides, pads,
            dimension_numbers=("NHWC", "HWOI", "NHWC"),
        )  # fmt: skip
    if not isinstance(dw, SymbolicZero):
        t = lax.conv_general_dilated(
            jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dw, (2, 0, 1, 3)), strides, pads,
            dimension_numbers=("CHWN", "IHWO", "HWNC"),
        )  # fmt: skip
        t = jnp.transpose(t, (2, 0, 1, 3))
        out = t if out is None else out + t
    return y, (jnp.zeros_like(y) if out is None else out)


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


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
        y = conv_nhwc(x, w, stride, pad)
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
