"""``fnet._xla``: per-program compiler options (CPU convolutions run by XLA's Eigen kernels).

jaxlib 0.10's XLA:CPU hands convolutions to YNNPACK by default, ~2x slower for a convnet
training step than XLA's own Eigen convolutions (docs/performance.md). Every program
fnet compiles that has a convolution, on CPU, must keep its convolutions out of YNNPACK;
every other program compiles with XLA's defaults; a user's ``XLA_FLAGS`` wins.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnet
from fnet import _xla
from fnet.train import TrainState, supervised, train_step
from fnet.train.engine import EpochEngine
from fnet.train.epoch import batch_plan
from fnet.train.step import make_step

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU-only option")


def _convolutions(hlo: str) -> tuple[int, int]:
    """``(all, inside YNNPACK fusions)``: the convolutions of an optimized HLO module."""
    bodies: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line)
        if head:
            name = head.group(1)
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line)
    ynn = re.findall(r"calls=%([\w.\-]+).*__ynn_fusion", hlo)
    inside = sum(" convolution(" in line for c in ynn for line in bodies.get(c, []))
    return hlo.count(" convolution("), inside


@pytest.fixture
def picked(monkeypatch):
    """The options :func:`fnet._xla.compiler_options` returns, call by call, from now on."""
    calls: list[dict[str, str]] = []
    real = _xla.compiler_options

    def spy(jaxpr, platform):
        calls.append(real(jaxpr, platform))
        return calls[-1]

    monkeypatch.setattr(_xla, "compiler_options", spy)
    return calls


def _convnet():
    # Channels large enough that this jaxlib hands convolutions to YNNPACK (it keeps
    # small ones, e.g. 4 and 8 channels at 12x12, for XLA's own kernels).
    model = fnet.models.convnet(10, channels=(16, 32), hidden=16)
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, 16, 16, 1))
    x = jnp.asarray(np.random.default_rng(0).random((8, 16, 16, 1)), jnp.float32)
    y = jnp.arange(8, dtype=jnp.int32) % 10
    return model, objective, params, x, y


def test_a_plain_jit_of_a_conv_step_puts_its_convolutions_in_ynnpack_here():
    # The premise of the option, on this jaxlib; if it stops holding, the option is moot.
    _, objective, params, x, y = _convnet()
    opt = optax.sgd(0.1)
    ts = TrainState.create(params, opt)
    plain = jax.jit(make_step(objective, opt)).lower(ts, x, y, jax.random.key(0))
    total, inside = _convolutions(plain.compile().as_text())
    if inside == 0:
        pytest.skip("this jaxlib runs convolutions with XLA's own kernels already")
    # (The first layer's forward pass, one input channel, is a patches GEMM on CPU.)
    assert total >= 4


def test_train_step_compiles_its_convolutions_outside_ynnpack():
    _, objective, params, x, y = _convnet()
    opt = optax.sgd(0.1)
    ts = TrainState.create(params, opt)
    step = train_step(objective, opt)
    total, inside = _convolutions(step.lower(ts, x, y, jax.random.key(0)).compile().as_text())
    # 1 forward (the first layer's, one input channel, is a patches GEMM on CPU), 2 weight
    # gradients, 1 input gradient
    assert total >= 4 and inside == 0
    ts2, metrics = step(ts, x, y, jax.random.key(0))
    want = jax.jit(make_step(objective, opt))(ts, x, y, jax.random.key(0))
    np.testing.assert_allclose(metrics["loss"], want[1]["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ts2.params), jax.tree.leaves(want[0].params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps_per_call", ["epoch", 1])
def test_fit_engine_compiles_its_convolutions_outside_ynnpack(steps_per_call):
    _, objective, params, x, y = _convnet()
    opt = optax.sgd(0.1)
    engine = EpochEngine(objective, opt, batch_plan(8, 4, "keep"), steps_per_call=steps_per_call)
    engine.compile(TrainState.create(params, opt), x, y, jax.random.key(0))
    programs = [engine._whole] if steps_per_call == "epoch" else [c for c, _, _ in engine._calls]
    for program in programs:
        total, inside = _convolutions(program.as_text())
        assert total >= 4 and inside == 0


def test_predict_and_evaluate_compile_with_the_options(picked):
    # (YNNPACK keeps a forward-only program's convolutions itself at these sizes, so the
    # HLO cannot show the difference: check that the options reach the compiler.)
    model, objective, params, x, y = _convnet()
    got = fnet.train.predict(model, params, x[:7], batch_size=3)  # shapes not compiled yet
    np.testing.assert_allclose(got, model.apply(params, x[:7]), rtol=1e-5, atol=1e-6)
    fnet.train.evaluate_objective(params, {}, x[:7], y[:7], objective=objective, batch_size=3)
    assert picked == [{_xla.YNN_OPTION: _xla.YNN_WITHOUT_CONVOLUTIONS}] * 2


def test_programs_without_convolutions_and_other_backends_get_xla_defaults():
    mlp = fnet.models.mlp((8,), 10)
    _, params = mlp.init(jax.random.key(0), (-1, 5))
    dense = jax.make_jaxpr(mlp.apply)(params, jnp.ones((2, 5)))
    model, _, conv_params, x, _ = _convnet()
    conv = jax.make_jaxpr(model.apply)(conv_params, x)
    assert _xla.compiler_options(dense, "cpu") == {}
    assert _xla.compiler_options(conv, "gpu") == {}
    assert _xla.compiler_options(conv, "cpu") == {_xla.YNN_OPTION: _xla.YNN_WITHOUT_CONVOLUTIONS}


def test_convolutions_inside_scan_and_custom_jvp_bodies_are_found():
    model, _, params, x, _ = _convnet()
    in_scan = jax.make_jaxpr(lambda p, xs: jax.lax.map(lambda v: model.apply(p, v), xs))(
        params, x[None]
    )
    assert _xla.has_convolution(in_scan)
    assert not _xla.has_convolution(jax.make_jaxpr(jnp.sin)(1.0))


def test_a_users_xla_flags_setting_of_the_option_wins(monkeypatch):
    model, _, params, x, _ = _convnet()
    conv = jax.make_jaxpr(model.apply)(params, x)
    monkeypatch.setenv("XLA_FLAGS", f"--{_xla.YNN_OPTION}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT")
    assert _xla.compiler_options(conv, "cpu") == {}


def test_conv_aware_jit_traces_once_per_shape_like_jax_jit():
    traces = []

    def f(x, w):
        traces.append(x.shape)
        return fnet.layers.conv_nhwc(x, w, (1, 1), "SAME")

    jitted = _xla.ConvAwareJit(f)
    x, w = jnp.ones((2, 5, 5, 1)), jnp.ones((3, 3, 1, 2))
    first = jitted(x, w)
    n = len(traces)
    jitted(x, w)
    assert len(traces) == n  # the second call hits jit's cache
    jitted(jnp.ones((3, 5, 5, 1)), w)
    assert len(traces) == n + 1
    assert jitted.__name__ == "f"
    np.testing.assert_allclose(first, jax.jit(f)(x, w), rtol=1e-6)


def test_train_step_works_under_transformations_and_with_keyword_arguments():
    # XLA refuses compiler options on a nested jit: under a trace the step is a plain jit.
    _, objective, params, x, y = _convnet()
    opt = optax.sgd(0.1)
    ts = TrainState.create(params, opt)
    step = train_step(objective, opt)
    key = jax.random.key(0)
    want = float(step(ts, x, y, key)[1]["loss"])
    assert float(step(ts, x, y, key=key)[1]["loss"]) == want
    compiled = step.lower(ts, x=x, y=y, key=key).compile()
    assert float(compiled(ts, x=x, y=y, key=key)[1]["loss"]) == want
    loss = lambda ts, x, y: step(ts, x, y, key)[1]["loss"]
    np.testing.assert_allclose(float(jax.jit(loss)(ts, x, y)), want, rtol=1e-6)
    batched = jax.vmap(lambda xb: loss(ts, xb, y))(jnp.stack([x, x]))
    np.testing.assert_allclose(np.asarray(batched), [want, want], rtol=1e-6)
    keys = jax.random.split(key, 2)
    scanned = jax.lax.scan(lambda t, k: step(t, x, y, k), ts, keys)[1]["loss"]
    np.testing.assert_allclose(float(scanned[0]), want, rtol=1e-6)
    assert jax.eval_shape(step, ts, x, y, key)[1]["loss"].shape == ()
    # Every argument a constant of the outer trace (no tracer to see): still works.
    np.testing.assert_allclose(float(jax.jit(lambda: loss(ts, x, y))()), want, rtol=1e-6)


def test_predict_works_under_transformations():
    model, _, params, x, _ = _convnet()
    want = model.apply(params, x)
    got = jax.jit(lambda p, v: fnet.train.predict(model, p, v, batch_size=3))(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(fnet.train.predict(model, p, x, batch_size=3)))(params)
    ref = jax.grad(lambda p: jnp.sum(model.apply(p, x)))(params)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_options_are_picked_per_static_configuration_and_platform(picked):
    def f(x, *, conv):
        return fnet.layers.conv_nhwc(x, jnp.ones((3, 3, 1, 2)), (1, 1), "SAME") if conv else x * 2

    jitted = _xla.ConvAwareJit(f, static_argnames=("conv",))
    x = jnp.ones((2, 5, 5, 1))
    jitted(x, conv=True)
    jitted(x, conv=False)
    jitted(x, conv=True)
    jitted(jnp.ones((3, 5, 5, 1)), conv=True)  # new shape: jit retraces, options kept
    assert picked == [{_xla.YNN_OPTION: _xla.YNN_WITHOUT_CONVOLUTIONS}, {}]


def test_a_jaxlib_without_the_option_compiles_with_its_defaults(monkeypatch):
    model, _, params, x, _ = _convnet()
    conv = jax.make_jaxpr(model.apply)(params, x)
    assert _xla._option_supported.__wrapped__() is True  # this jaxlib does know it
    monkeypatch.setattr(_xla, "_option_supported", lambda: False)
    assert _xla.compiler_options(conv, "cpu") == {}


def test_evaluate_objective_works_under_transformations():
    model, objective, params, x, y = _convnet()
    want = fnet.train.evaluate_objective(params, {}, x, y, objective=objective, batch_size=3)

    def loss(p):
        got = fnet.train.evaluate_objective(p, {}, x, y, objective=objective, batch_size=3)
        return got["loss"]

    np.testing.assert_allclose(float(jax.jit(loss)(params)), float(want["loss"]), rtol=1e-5)
    grad = jax.grad(loss)(params)
    ref = jax.grad(lambda p: fnet.losses.softmax_cross_entropy(model.apply(p, x), y))(params)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
