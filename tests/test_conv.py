"""``fnet.layers.conv_nhwc``: lax's convolution with gradients in XLA:CPU's canonical form.

Values and every derivative (reverse, forward, forward-over-reverse, per-example under
``vmap``) must equal ``lax.conv_general_dilated``'s; the compiled gradient of a scanned
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
    np.testing.assert_array_equal(mine[0], ref[0])
    for a, b in zip(jax.tree.leaves(mine[1:]), jax.tree.leaves(ref[1:]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


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
