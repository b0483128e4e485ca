"""Tests of the training engine (``fnet.train.engine``): the step driver and compile caching.

Every driver (``steps_per_call="epoch"``, an int, ``"auto"``) must run the same steps on
the same batches with the same keys in the same order: same key -> the same bits. And a
second ``fit`` with the same objective, optimizer and shapes must trace nothing.
Shapes are tiny: compiling dominates on a busy CPU.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import fnet
from fnet import distributed
from fnet.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu
from fnet.losses import softmax_cross_entropy
from fnet.train import batch_plan, fit, supervised
from fnet.train.engine import AUTO_CHUNK, LOOP_HOSTILE_PRIMITIVES, resolve_steps_per_call

RNG = np.random.default_rng(0)
N, B = 70, 16  # 4 full batches and a tail of 6 ("keep"), or 4 steps ("drop")
Y = RNG.integers(0, 3, N).astype(np.int32)
X_DENSE = RNG.normal(size=(N, 5)).astype(np.float32)
X_IMG = RNG.random((N, 6, 6, 1), dtype=np.float32)
SGD = optax.sgd(0.1, momentum=0.9)

DENSE = fnet.models.mlp([8], 3, dropout=0.3)
BN_DROP = fnet.serial(Dense(8), BatchNorm(), Relu(), Dropout(0.3), Dense(3))
CONV = fnet.serial(Conv2D(3, 3), Relu(), MaxPool(2), Flatten(), Dense(3))
CASES = {
    "dense": (DENSE, X_DENSE),
    "batchnorm_dropout": (BN_DROP, X_DENSE),
    "conv": (CONV, X_IMG),
}


def _fit(name: str, steps_per_call, remainder: str = "keep", epochs: int = 2):
    model, x = CASES[name]
    init = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    params, state = init[1], (init[2] if len(init) == 3 else None)
    objective = supervised(model, softmax_cross_entropy)
    return fit(objective, params, SGD, x, Y, state=state, key=jax.random.key(3), epochs=epochs,
               batch_size=B, remainder=remainder, steps_per_call=steps_per_call,
               progress=False)  # fmt: skip


def _assert_same_bits(a, b) -> None:
    trees = [(r.params, r.state, r.opt_state) for r in (a, b)]
    for got, want in zip(*map(jax.tree.leaves, trees), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for k, v in b.history.items():
        if k.startswith("train_"):
            assert a.history[k] == v, k


@pytest.mark.parametrize("remainder", ["keep", "drop"])
@pytest.mark.parametrize("name", ["dense", "conv"])
def test_every_chunk_size_gives_the_same_bits_for_the_same_key(name, remainder):
    # 3 steps per call: a chunk of 3, then a chunk of 1 (and the tail batch with "keep");
    # 1: one step per call.
    _assert_same_bits(_fit(name, 1, remainder), _fit(name, 3, remainder))


@pytest.mark.parametrize("remainder", ["keep", "drop"])
def test_batchnorm_dropout_chunks_agree_to_rounding(remainder):
    # BatchNorm's batch reductions compile to slightly different code when several steps
    # share one program (docs/design.md): the same steps, keys and batches, last bits only.
    one, three = _fit("batchnorm_dropout", 1, remainder), _fit("batchnorm_dropout", 3, remainder)
    trees = [(r.params, r.state, r.opt_state) for r in (one, three)]
    for got, want in zip(*map(jax.tree.leaves, trees), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    assert one.history["steps"] == three.history["steps"]


@pytest.mark.parametrize("name", ["dense", "batchnorm_dropout", "conv"])
def test_rolled_epoch_agrees_with_the_chunks_to_rounding(name):
    # XLA:CPU compiles a step inside a while loop (the rolled "epoch" scan) to other code
    # than in straight-line code (every int steps_per_call): for convolutions and
    # BatchNorm's reductions the results differ in the last bits (docs/design.md).
    chunked, rolled = _fit(name, 3), _fit(name, "epoch")
    for got, want in zip(jax.tree.leaves(rolled.params), jax.tree.leaves(chunked.params),
                         strict=True):  # fmt: skip
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    if name == "dense":  # an MLP compiles to the same code either way
        _assert_same_bits(rolled, chunked)


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


def test_auto_driver_rule():
    conv = frozenset({"conv_general_dilated", "add"})
    dense = frozenset({"dot_general", "add"})
    assert resolve_steps_per_call("auto", conv, "cpu", 600) == AUTO_CHUNK
    assert resolve_steps_per_call("auto", conv, "gpu", 600) is None
    assert resolve_steps_per_call("auto", dense, "cpu", 600) is None
    assert resolve_steps_per_call(10, conv, "cpu", 3) == 3  # clipped to the epoch
    assert resolve_steps_per_call("epoch", conv, "cpu", 600) is None
    assert resolve_steps_per_call(5, dense, "gpu", 600) == 5
    assert "reduce_window" in LOOP_HOSTILE_PRIMITIVES
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
