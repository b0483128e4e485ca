"""``fnet.layers.conv_nhwc``: lax's convolution with gradients in XLA:CPU's canonical form.

Values and every derivative (reverse, forward, forward-over-reverse, per-example under
``vmap``) must equal ``lax.conv_general_dilated``'s (to rounding where the CPU forward
pass of a short contraction is a GEMM of the input's patches); the compiled gradient of a scanned
(``while``) training step must contain canonical convolutions only (the cause of the
~10x slower rolled epoch and of its other rounding, issue 10).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fnet
from fnet.layers import Conv2D, conv_nhwc

RNG = np.random.default_rng(0)
CASES = [  # (H, W, kernel, stride, padding)
    (7, 8, 3, 1, "SAME"),
    (8, 8, 3, 2, "SAME"),
    (9, 7, 2, 3, "VALID"),
    (6, 5, 5, 2, "SAME"),
    (5, 5, 1, 1, "VALID"),
    (4, 6, (1, 3), (2, 1), ((1, 0), (2, 1))),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _operands(h, w, k, dtype):
    kh, kw = _pair(k)
    x = jnp.asarray(RNG.normal(size=(3, h, w, 2)), dtype)
    kern = jnp.asarray(RNG.normal(size=(kh, kw, 2, 4)), dtype)
    return x, kern


def _lax(x, w, s, p):
    return lax.conv_general_dilated(x, w, _pair(s), p, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _loss(conv, s, p):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w, _pair(s), p)))


@pytest.mark.parametrize(("h", "w", "k", "s", "p"), CASES)
def test_values_and_gradients_equal_lax_in_float64(h, w, k, s, p):
    x, kern = _operands(h, w, k, jnp.float64)
    tangents = (jnp.ones_like(x), jnp.ones_like(kern))

    def derivatives(x, kern, conv):
        f = _loss(conv, s, p)
        value = conv(x, kern, _pair(s), p)
        grads = jax.grad(f, (0, 1))(x, kern)
        jvp = jax.jvp(f, (x, kern), tangents)[1]
        hvp = jax.jvp(jax.grad(f, (0, 1)), (x, kern), tangents)[1]
        return value, grads, jvp, hvp

    # One compiled program per side (eagerly, every primitive compiles on its own).
    derivatives = jax.jit(derivatives, static_argnums=2)
    mine, ref = derivatives(x, kern, conv_nhwc), derivatives(x, kern, _lax)
    # Short kernels (kh * kw * C_in <= MAX_TAPS) sum in another order on CPU (a GEMM).
    np.testing.assert_allclose(mine[0], ref[0], rtol=1e-13, atol=1e-13)
    for a, b in zip(jax.tree.leaves(mine[1:]), jax.tree.leaves(ref[1:]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


TAP_CASES = [  # (N, H, W, C_in, kernel, stride, padding, C_out): kh * kw * C_in <= 25
    (4, 28, 28, 1, 3, 1, "SAME", 8),
    (1, 9, 9, 1, 5, 1, "SAME", 3),  # a batch of one, 25 taps
    (3, 11, 10, 2, 3, 2, "VALID", 5),  # strided, 18 taps
    (2, 7, 9, 2, (3, 2), (2, 1), ((2, 0), (1, 1)), 4),  # explicit, asymmetric padding
    (2, 8, 8, 1, 3, 1, ((-1, 1), (0, -1)), 4),  # negative padding crops, as in lax
]


def _padded_lax(x, w, s, p):
    """The definition: pad (negative entries crop), then a VALID convolution."""
    if not isinstance(p, str):
        x = lax.pad(
            x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in p), (0, 0, 0))
        )
        p = "VALID"
    return _lax(x, w, s, p)


def _tap_operands(n, h, w, c, k, c_out, dtype):
    kh, kw = _pair(k)
    x = jnp.asarray(RNG.normal(size=(n, h, w, c)) + 3.0, dtype)  # large-mean pixels
    return x, jnp.asarray(RNG.normal(size=(kh, kw, c, c_out)), dtype)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the patches GEMM is the CPU lowering")
@pytest.mark.parametrize(("n", "h", "w", "c", "k", "s", "p", "c_out"), TAP_CASES)
def test_short_kernels_run_as_a_patches_gemm_on_cpu_with_lax_values(n, h, w, c, k, s, p, c_out):
    x, kern = _tap_operands(n, h, w, c, k, c_out, jnp.float32)
    fwd = jax.jit(lambda x, w: conv_nhwc(x, w, _pair(s), p))
    assert not _conv_dim_labels(fwd.lower(x, kern).compile().as_text())  # no convolution
    want = _padded_lax(x, kern, s, p)
    np.testing.assert_allclose(fwd(x, kern), want, rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(conv_nhwc(x, kern, _pair(s), p), want, rtol=2e-6, atol=2e-5)
    grads = jax.jit(jax.grad(_loss(conv_nhwc, s, p), (0, 1)))(x, kern)
    for a, b in zip(grads, jax.grad(_loss(_padded_lax, s, p), (0, 1))(x, kern), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in", [1, 4])  # the patches GEMM and XLA's convolution
def test_negative_padding_on_one_side_and_positive_on_the_other_crops_then_pads(c_in):
    # XLA:CPU's own convolution returns garbage (~1e18) for ((-1, 1), ...) padding.
    x, kern = _tap_operands(2, 8, 8, c_in, 3, 4, jnp.float64)
    pads = ((-1, 1), (2, -1))
    got = jax.jit(lambda x, w: conv_nhwc(x, w, (1, 1), pads))(x, kern)
    np.testing.assert_allclose(got, _padded_lax(x, kern, 1, pads), rtol=1e-12, atol=1e-12)
    grads = jax.grad(_loss(conv_nhwc, 1, pads), (0, 1))(x, kern)
    want = jax.grad(_loss(_padded_lax, 1, pads), (0, 1))(x, kern)
    for a, b in zip(grads, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("dtype", "eps"), [(jnp.bfloat16, 2**-8), (jnp.float16, 2**-10)])
def test_short_kernels_in_half_precision_accumulate_in_float32(dtype, eps):
    x, kern = _tap_operands(2, 8, 8, 2, 3, 4, jnp.float32)
    got = conv_nhwc(x.astype(dtype), kern.astype(dtype), (1, 1), "SAME")
    assert got.dtype == dtype
    want = _lax(x.astype(dtype).astype(jnp.float32), kern.astype(dtype).astype(jnp.float32),
                1, "SAME")  # fmt: skip
    # One half-precision rounding of the float32 sum, not 18 of them.
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=eps, atol=eps)


@pytest.mark.parametrize(
    ("x_shape", "pads"),
    [((2, 1, 1, 1), "VALID"), ((2, 4, 8, 1), ((-1, -2), (0, 0))), ((0, 5, 5, 1), "SAME")],
)
def test_short_kernels_with_empty_outputs_give_laxs_empty_arrays(x_shape, pads):
    x = jnp.ones(x_shape, jnp.float32)
    kern = jnp.ones((3, 3, 1, 2), jnp.float32)
    got = conv_nhwc(x, kern, (1, 1), pads)
    want = _padded_lax(x, kern, 1, pads)
    assert got.shape == want.shape and got.size == 0
    assert jax.jit(lambda x, w: conv_nhwc(x, w, (1, 1), pads))(x, kern).shape == want.shape


def test_short_kernels_leave_integer_and_mixed_dtypes_to_lax():
    big = jnp.full((1, 3, 3, 1), 2**24 + 1, jnp.int32)  # not exact in float32
    got = conv_nhwc(big, jnp.ones((1, 1, 1, 1), jnp.int32), (1, 1), "SAME")
    assert got.dtype == jnp.int32 and int(got[0, 0, 0, 0]) == 2**24 + 1
    x, kern = jnp.ones((1, 4, 4, 1), jnp.bfloat16), jnp.ones((3, 3, 1, 2), jnp.float32)
    for call in (conv_nhwc, jax.jit(conv_nhwc, static_argnums=(2, 3))):
        with pytest.raises(TypeError, match="same dtype"):
            call(x, kern, (1, 1), "SAME")


def test_conv2d_on_an_input_smaller_than_a_short_valid_kernel_raises_shape_error():
    with pytest.raises(fnet.errors.ShapeError, match="does not fit"):
        Conv2D(4, 3, padding="VALID").init(jax.random.key(0), (-1, 1, 1, 1))


@pytest.mark.parametrize("c_in", [3, 4])  # 27 (RGB) and 36 taps > MAX_TAPS
def test_long_kernels_keep_xla_convolutions(c_in):
    x, kern = _tap_operands(2, 8, 8, c_in, 3, 5, jnp.float32)
    fwd = jax.jit(lambda x, w: conv_nhwc(x, w, (1, 1), "SAME"))
    assert _conv_dim_labels(fwd.lower(x, kern).compile().as_text()) == {"b01f_01io->b01f"}


def test_per_example_gradients_under_vmap_equal_lax():
    x, kern = _operands(7, 8, 3, jnp.float64)
    mine, ref = _loss(conv_nhwc, 2, "SAME"), _loss(_lax, 2, "SAME")
    per = [jax.vmap(lambda xi, f=f: jax.grad(f, 1)(xi[None], kern))(x) for f in (mine, ref)]
    np.testing.assert_allclose(per[0], per[1], rtol=1e-12, atol=1e-12)


def test_float32_gradients_match_lax_to_rounding():
    x, kern = _operands(8, 8, 3, jnp.float32)
    for a, b in zip(
        jax.jit(jax.grad(_loss(conv_nhwc, 1, "SAME"), (0, 1)))(x, kern),
        jax.jit(jax.grad(_loss(_lax, 1, "SAME"), (0, 1)))(x, kern),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def _conv_dim_labels(hlo: str) -> set[str]:
    return set(re.findall(r"convolution\(.*?dim_labels=(\S+?)[,\s]", hlo))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's canonical form only")
def test_scanned_conv_training_steps_compile_to_canonical_convolutions_only():
    model = fnet.serial(Conv2D(4, 3, strides=2), fnet.layers.Relu(), Conv2D(2, 3))
    _, params = model.init(jax.random.key(0), (-1, 8, 8, 1))
    xs = jnp.asarray(RNG.random((3, 5, 8, 8, 1)), jnp.float32)

    def step(p, xb):
        g = jax.grad(lambda p: jnp.sum(model.apply(p, xb) ** 2))(p)
        return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), None

    scan = jax.jit(lambda p, xs: lax.scan(step, p, xs)[0])
    hlo = scan.lower(params, xs).compile().as_text()
    assert "while" in hlo
    assert _conv_dim_labels(hlo) == {"b01f_01io->b01f"}, _conv_dim_labels(hlo)
