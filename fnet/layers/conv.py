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
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``'s (to rounding: on CPU a kernel with
    ``kh * kw * C_in <= MAX_TAPS``, e.g. a 3x3 or 5x5 first layer on grayscale images,
    is computed as one GEMM of the input's patches, 1.2-2.4x faster than XLA:CPU's
    convolution there); forward- and reverse-mode derivatives (and so Hessian-vector
    products, ``vmap``'d per-example gradients) equal its own. Negative padding crops
    (as in ``lax``).
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
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if any(p < 0 for pair in pads for p in pair):
        # Negative padding crops. XLA:CPU's convolution reads out of bounds when one side
        # of an axis is negative and the other positive (jaxlib 0.10.2: values ~1e18 for
        # ``((-1, 1), (0, 0))``), so crop first and pad with the non-negative rest.
        crop = tuple((min(lo, 0), min(hi, 0), 0) for lo, hi in pads)
        x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *crop, (0, 0, 0)))
        pads = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
    return _conv(x, w, strides, pads)


#: Largest ``kh * kw * C_in`` (the contraction length, "taps", of the convolution's GEMM)
#: for which fnet's forward pass on CPU is one GEMM of the input's patches
#: (:func:`_conv_patches`) instead of XLA:CPU's convolution kernel (the gradients stay
#: convolutions). Measured on a 2-core AMD EPYC (Zen 4), forward pass alone, B=100, six
#: interleaved repeats (``docs/performance.md``): 28x28x1 -> 32, 3x3 (9 taps) 1.8-2.4x
#: faster; 28x28x2 and 32x32x2, 3x3 (18) 1.6-1.8x; 28x28x1, 5x5 (25) 1.2-1.6x; 32x32x3,
#: 3x3 (27) 1.0-1.08x, and in a training step +3% without and -7% with BatchNorm, so RGB
#: inputs keep XLA's kernel; 32x32x3, 5x5 (75) 0.3-0.4x.
MAX_TAPS = 25


def _conv_lax(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _windows(x: jax.Array, kernel: tuple[int, int], strides: tuple[int, ...], pads: Pads):
    """The ``kh * kw`` shifted views of ``x`` a convolution reads, in ``(a, b)`` order.

    Window ``(a, b)`` is ``x_pad[:, a::s_h, b::s_w, :]`` cut to the output's
    ``(N, H', W', C_in)``, so that ``y = sum_{a, b} window_ab @ w[a, b]``. (Not
    ``lax.conv_general_dilated_patches``: it extracts the patches with a convolution,
    the op this path avoids; 4.3 vs 2.6 ms for the 28x28x1 3x3 forward pass, B=100.)
    """
    kh, kw = kernel
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    ho = (xp.shape[1] - kh) // strides[0] + 1
    wo = (xp.shape[2] - kw) // strides[1] + 1
    return [
        lax.slice(
            xp,
            (0, a, b, 0),
            (xp.shape[0], a + (ho - 1) * strides[0] + 1, b + (wo - 1) * strides[1] + 1, x.shape[3]),
            (1, strides[0], strides[1], 1),
        )
        for a in range(kh)
        for b in range(kw)
    ]


def _conv_patches(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: Pads) -> jax.Array:
    """The same cross-correlation as one GEMM: ``patches(x) @ w.reshape(K, C_out)``.

    ``patches(x)[n, i, j, (a, b, c)] = x_pad[n, s_h i + a, s_w j + b, c]`` (``K = kh * kw
    * C_in`` columns, ordered like the rows of ``w.reshape(K, C_out)``), accumulated in at
    least float32. For a short contraction (a first layer on grayscale images) the
    patches are small (``K`` times the input) and this beats XLA:CPU's convolution kernel,
    which packs the same GEMM with a ``K``-long inner dimension less well. A dot, unlike
    an elementwise sum of shifted taps (tried: faster alone, but XLA fused it into every
    consumer, and recomputed it per window element in BatchNorm's and MaxPool's
    gradients: 0.7x the step with XLA's convolution, with BatchNorm), is computed once
    and read.
    """
    kh, kw, c_in, c_out = w.shape
    patches = jnp.concatenate(_windows(x, (kh, kw), strides, pads), axis=-1)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    y = lax.dot_general(
        patches, w.reshape(kh * kw * c_in, c_out), (((3,), (0,)), ((), ())),
        preferred_element_type=acc,
    )  # fmt: skip
    return y.astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: Pads) -> jax.Array:
    kh, kw, c_in, _ = w.shape
    # lax's own shape and dtype rules (its errors, eagerly and under jit alike).
    out = jax.eval_shape(functools.partial(_conv_lax, strides=strides, pads=pads), x, w)
    if (
        kh * kw * c_in > MAX_TAPS
        or out.size == 0  # an empty output: lax's shapes
        or not jnp.issubdtype(x.dtype, jnp.inexact)  # integers: lax's exact arithmetic
    ):
        return _conv_lax(x, w, strides, pads)
    # Chosen when the program is lowered (eagerly: by the platform the op runs on): the
    # patches GEMM on CPU, XLA's convolution elsewhere.
    return lax.platform_dependent(
        x, w, cpu=lambda x, w: _conv_patches(x, w, strides, pads),
        default=lambda x, w: _conv_lax(x, w, strides, pads),
    )  # fmt: skip


def _weight_tangent_canonical(x, dw, strides: tuple[int, ...], pads: Pads) -> jax.Array:
    """``conv(x, dw)``, linear in ``dw``, written so that its transpose is canonical."""
    t = lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dw, (2, 0, 1, 3)), strides, pads,
        dimension_numbers=("CHWN", "IHWO", "HWNC"),
    )  # fmt: skip
    return jnp.transpose(t, (2, 0, 1, 3))


def _conv_jvp(strides: tuple[int, ...], pads: Pads, primals, tangents):
    """Tangents written so that JAX's transposes of them are canonical convolutions.

    ``d/dx``: ``conv(dx, w)`` with the kernel passed as ``(kh, kw, C_out, C_in)`` (spec
    ``HWOI``): its transpose in ``dx`` is a convolution with spec ``HWIO``.
    ``d/dw``: ``conv(x, dw)`` on ``x`` as ``(C_in, H, W, N)`` (spec ``CHWN``), ``dw`` as
    ``(C_in, kh, kw, C_out)`` (``IHWO``) and the output as ``(H', W', N, C_out)``
    (``HWNC``): its transpose in ``dw`` is the NHWC/HWIO/NHWC convolution of ``x``
    (batch and channels swapped) with the output gradient (as ``(H', W', N, C_out)``),
    i.e. the weight gradient in the canonical form XLA:CPU would otherwise produce with
    transposes in the entry computation only. (For a short contraction, the weight
    gradient as one GEMM of the input's patches measured slower inside the training
    step than this convolution: 3,234 vs 3,705 samples/s for the slides' convnet,
    ``docs/performance.md``, fourth pass.)
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
        t = _weight_tangent_canonical(x, dw, strides, pads)
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
