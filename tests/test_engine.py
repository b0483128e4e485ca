"""Tests of the training engine (``fnet.train.engine``): the step driver and compile caching.

Every driver (``steps_per_call="epoch"``, an int, ``"auto"``) must run the same steps on
the same batches with the same keys in the same order: same key -> the same bits. And a
second ``fit`` with the same objective, optimizer and shapes must trace nothing.
Shapes are tiny: compiling dominates on a busy CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from engine_cases import (
    BN_DROP,
    CASES,
    CONV,
    DENSE,
    SGD,
    X_DENSE,
    X_IMG,
    B,
    Y,
)  # fmt: skip
from engine_cases import assert_same_bits as _assert_same_bits
from engine_cases import fit_case as _fit

import fnet
from fnet import distributed
from fnet.layers import Dense, Flatten
from fnet.losses import softmax_cross_entropy
from fnet.train import batch_plan, fit, supervised
from fnet.train.engine import AUTO_CHUNK, loop_slow_ops, resolve_steps_per_call


def test_second_fit_call_traces_nothing():
    traces = []
    model = CASES["dense"][0]
    objective = supervised(model, softmax_cross_entropy)

    def counting(params, state, xb, yb, key, *, train=True):
        traces.append(xb.shape[0])
        return objective(params, state, xb, yb, key, train=train)

    params = model.init(jax.random.key(0), (-1, 5))[1]
    for spc in ("epoch", 2):
        traces.clear()
        kw = dict(epochs=2, batch_size=B, progress=False, steps_per_call=spc)
        fit(counting, params, SGD, X_DENSE, Y, key=jax.random.key(0), **kw)
        first = len(traces)
        assert first > 0 and 6 in traces  # the tail batch was traced
        res = fit(counting, params, SGD, X_DENSE, Y, key=jax.random.key(1), **kw)
        assert len(traces) == first, spc  # same shapes, objective and optimizer
        assert res.history["epoch"] == [1, 2]


def test_chunked_driver_on_a_one_device_mesh_gives_the_same_bits():
    model = CASES["dense"][0]
    params = model.init(jax.random.key(0), (-1, 5))[1]
    objective = supervised(model, softmax_cross_entropy)
    kw = dict(key=jax.random.key(0), epochs=1, batch_size=B, progress=False, steps_per_call=3)
    plain = fit(objective, params, SGD, X_DENSE, Y, **kw)
    meshed = fit(objective, params, SGD, X_DENSE, Y, mesh=distributed.data_mesh(1), **kw)
    _assert_same_bits(meshed, plain)


def test_equal_supervised_objectives_share_compiled_code():
    a = supervised(DENSE, softmax_cross_entropy)
    b = supervised(DENSE, softmax_cross_entropy)
    assert a == b and hash(a) == hash(b)
    assert a != supervised(DENSE, softmax_cross_entropy, accuracy=False)


def test_training_accuracy_is_optional():
    model, x = CASES["dense"]
    params = model.init(jax.random.key(0), (-1, 5))[1]
    objective = supervised(model, softmax_cross_entropy, accuracy=False)
    res = fit(objective, params, SGD, x, Y, key=jax.random.key(0), epochs=1, batch_size=B,
              progress=False)  # fmt: skip
    assert "train_accuracy" not in res.history
    assert res.history["train_objective"] == res.history["train_loss"]


def _lax_conv_model():
    """A conv layer written with plain ``lax``: JAX's gradient convolutions of it are not
    in XLA:CPU's canonical form (its weight gradient is ``f01b_i01o->01bf``)."""

    def init(key, input_shape):
        w = jax.random.normal(key, (3, 3, input_shape[-1], 3), jnp.float32) * 0.1
        return (*input_shape[:-1], 3), {"w": w}

    def apply(params, x, **_):
        return jax.lax.conv_general_dilated(
            x, params["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    return fnet.serial(fnet.core.Model(init, apply, "lax_conv"), Flatten(), Dense(3))


def _slow_ops(model, x):
    params = model.init(jax.random.key(0), (-1, *x.shape[1:]))[1]
    objective = supervised(model, softmax_cross_entropy)
    grad = jax.grad(lambda p: objective(p, None, x[:4], Y[:4], jax.random.key(0))[0])
    return loop_slow_ops(jax.make_jaxpr(grad)(params).jaxpr)


def test_loop_slow_ops_finds_non_canonical_convolutions_only():
    assert _slow_ops(CONV, X_IMG) == frozenset()  # fnet's Conv2D: canonical gradients
    assert _slow_ops(fnet.models.convnet(3, channels=(2,), hidden=4), X_IMG) == frozenset()
    assert _slow_ops(DENSE, X_DENSE) == frozenset()
    slow = _slow_ops(_lax_conv_model(), X_IMG)
    assert slow and all(op.startswith("conv_general_dilated") for op in slow)


def test_auto_driver_is_the_rolled_epoch_for_fnet_convnets_on_cpu():
    assert _fit("conv", "auto", epochs=1).history["steps_per_call"] == "epoch"
    assert _fit("conv", 3, epochs=1).history["steps_per_call"] == 3


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rule is for XLA:CPU")
def test_auto_driver_runs_one_step_per_call_for_a_hand_written_lax_conv_on_cpu():
    model = _lax_conv_model()
    params = model.init(jax.random.key(0), (-1, *X_IMG.shape[1:]))[1]
    res = fit(supervised(model, softmax_cross_entropy), params, SGD, X_IMG, Y,
              key=jax.random.key(0), epochs=1, batch_size=B, progress=False)  # fmt: skip
    assert res.history["steps_per_call"] == AUTO_CHUNK


def test_auto_driver_rule():
    slow = frozenset({"conv_general_dilated (3, 0, 1, 2)/(0, 3, 1, 2)->(2, 3, 0, 1)"})
    none: frozenset[str] = frozenset()
    assert resolve_steps_per_call("auto", slow, "cpu", 600) == AUTO_CHUNK
    assert resolve_steps_per_call("auto", slow, "gpu", 600) is None
    assert resolve_steps_per_call("auto", none, "cpu", 600) is None
    assert resolve_steps_per_call(10, slow, "cpu", 3) == 3  # clipped to the epoch
    assert resolve_steps_per_call("epoch", slow, "cpu", 600) is None
    assert resolve_steps_per_call(5, none, "gpu", 600) == 5
    dense = none
    for bad in (0, -1, "fast"):
        with pytest.raises(ValueError, match="steps_per_call"):
            resolve_steps_per_call(bad, dense, "cpu", 10)
    for bad in (2.5, True, None):
        with pytest.raises(TypeError, match=r"steps_per_call \(if not 'auto' or 'epoch'\)"):
            resolve_steps_per_call(bad, dense, "cpu", 10)


def test_one_example_remainder_is_merged_for_stateful_models():
    # 33 = 2 * 16 + 1: BatchNorm in train mode on one example outputs its offset.
    assert batch_plan(33, 16, "keep", merge_single=True) == (1, 17, 0, 16)
    assert batch_plan(33, 16, "keep") == (2, 1, 0, 16)
    assert batch_plan(33, 16, "drop", merge_single=True) == (2, 0, 1, 16)
    assert batch_plan(34, 16, "keep", merge_single=True) == (2, 2, 0, 16)
    _, params, state = BN_DROP.init(jax.random.key(0), (-1, 5))
    objective = supervised(BN_DROP, softmax_cross_entropy)
    kw = dict(key=jax.random.key(0), epochs=1, batch_size=16, progress=False)
    res = fit(objective, params, SGD, X_DENSE[:33], Y[:33], state=state, **kw)
    assert res.history["steps"] == [2] and res.history["examples_seen"] == [33]
    stateless = supervised(DENSE, softmax_cross_entropy)
    params = DENSE.init(jax.random.key(0), (-1, 5))[1]
    res = fit(stateless, params, SGD, X_DENSE[:33], Y[:33], **kw)
    assert res.history["steps"] == [3]  # no state: the tail of one stays its own step
