"""Tests of fnet.train: the train step, fit (one compiled epoch), evaluate and hooks.

Compiles dominate the run time on a busy CPU, so tests share module-level objectives and
optimizers (compiled code is reused while they are the same objects and the shapes match).
"""

from __future__ import annotations

import io
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnet
from fnet.datasets import spiral
from fnet.errors import ShapeError
from fnet.losses import softmax_cross_entropy
from fnet.regularizers import l2
from fnet.train import (
    TrainState,
    batch_plan,
    evaluate,
    every_k_epochs,
    fit,
    supervised,
    train_step,
)


def _spiral(n_per_class: int, key: jax.Array, n_classes: int = 3, noise: float = 0.2):
    """SEEDS §1 spiral, noise on the angle: ``(3n, 2)`` float32 points, ``(3n,)`` int32 labels."""
    data = spiral(n_per_class, n_classes=n_classes, noise=noise, key=key)
    return jnp.asarray(data.inputs, jnp.float32), jnp.asarray(data.labels, jnp.int32)


X, Y = _spiral(100, jax.random.key(0))
MLP = fnet.models.mlp([100], 3, "relu")
MLP_OBJ = supervised(MLP, softmax_cross_entropy)
ADAM = optax.adam(0.02)
SMALL = fnet.models.mlp([16], 3, "relu", dropout=0.2)
SMALL_OBJ = supervised(SMALL, softmax_cross_entropy)
SGD = optax.sgd(0.5)
LIN = fnet.models.linear(3)
LIN_OBJ = supervised(LIN, softmax_cross_entropy)
LIN_SGD = optax.sgd(0.5)


def _init(model, key=1, shape=(-1, 2)):
    return model.init(jax.random.key(key), shape)[1]


def _leaves_equal(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(u, v) for u, v in pairs)


# ------------------------------------------------------------------------ train step


def test_optax_momentum_matches_slides_update_rule_and_step_is_pure():
    # Slides: v = mu v - eta g; w += v. optax.sgd(eta, momentum=mu): v = mu v + g; w -= eta v.
    # With constant eta the two give the same iterates (v_slides = -eta v_optax).
    eta, mu = 0.1, 0.9
    params = fnet.cast_floating(_init(LIN), jnp.float64)
    x, y = X[:50].astype(jnp.float64), Y[:50]
    optimizer = optax.sgd(eta, momentum=mu)
    step = train_step(LIN_OBJ, optimizer)
    ts = TrainState.create(params, optimizer)

    @jax.jit
    def slides_update(w, v):
        g = jax.grad(lambda p: softmax_cross_entropy(LIN.apply(p, x), y))(w)
        v = jax.tree.map(lambda v_, g_: mu * v_ - eta * g_, v, g)
        return jax.tree.map(lambda w_, v_: w_ + v_, w, v), v

    w, v = params, jax.tree.map(jnp.zeros_like, params)
    for _ in range(6):
        w, v = slides_update(w, v)
        ts, metrics = step(ts, x, y, jax.random.key(0))
        chex.assert_trees_all_close(ts.params, w, rtol=1e-12, atol=1e-14)
    assert int(ts.step) == 6 and set(metrics) == {"loss", "accuracy", "objective"}
    assert metrics["loss"].dtype == jnp.float64 and metrics["accuracy"].dtype == jnp.float32
    again = [step(ts, x, y, jax.random.key(0))[0] for _ in range(2)]
    chex.assert_trees_all_equal(*again)  # pure: same inputs, same outputs; inputs intact
    chex.assert_trees_all_equal(params, fnet.cast_floating(_init(LIN), jnp.float64))


def test_supervised_objective_is_loss_plus_penalty_eager_and_jit(maybe_jit):
    params = _init(LIN)
    obj = supervised(LIN, softmax_cross_entropy, penalty=lambda p: 0.1 * l2(p))
    loss, (state, m) = maybe_jit(obj)(params, {}, X, Y, None)
    ce = softmax_cross_entropy(LIN.apply(params, X), Y)
    np.testing.assert_allclose(m["loss"], ce, rtol=1e-6)
    np.testing.assert_allclose(loss, ce + 0.1 * l2(params), rtol=1e-6)
    assert state == {} and set(m) == {"loss", "accuracy", "penalty"}
    assert loss.dtype == m["loss"].dtype == m["penalty"].dtype == jnp.float32


# ------------------------------------------------------------------------ fit


def test_supervised_reports_accuracy_only_for_class_labels():
    """One correctness predicate (fnet.metrics.correct): class ids with (N, C) scores,
    ±1 labels with (N,) scores (the sign is the prediction); no accuracy for float targets."""
    params = _init(LIN)
    scores = LIN.apply(params, X)
    _, (_, m) = LIN_OBJ(params, {}, X, Y, None, train=False)
    assert m["accuracy"] == jnp.mean((jnp.argmax(scores, -1) == Y).astype(jnp.float32))

    binary = fnet.serial(fnet.Dense(1), fnet.layers.Reshape(()))
    b_params = _init(binary)
    s = binary.apply(b_params, X)
    pm1 = jnp.where(Y == 0, -1, 1)
    _, (_, m) = supervised(binary, fnet.losses.binary_logistic)(b_params, {}, X, pm1, None)
    assert m["accuracy"] == jnp.mean(((s > 0) == (pm1 > 0)).astype(jnp.float32))

    mse = supervised(binary, fnet.losses.mean_squared_error)
    _, (_, m) = mse(b_params, {}, X, pm1.astype(jnp.float32), None)
    assert "accuracy" not in m


def test_correct_predictions_is_a_deprecated_alias_of_metrics_correct():
    scores = LIN.apply(_init(LIN), X)
    with pytest.warns(DeprecationWarning, match="fnet.metrics.correct"):
        right = fnet.train.correct_predictions(scores, Y)
    np.testing.assert_array_equal(right, fnet.metrics.correct(scores, Y))
    with pytest.warns(DeprecationWarning):
        assert fnet.train.correct_predictions(scores, Y.astype(jnp.float32)) is None


def test_fit_spiral_mlp_reaches_99_percent_and_linear_stays_near_half():
    result = fit(MLP_OBJ, _init(MLP), ADAM, X, Y, key=jax.random.key(0), epochs=300,
                 batch_size=300, progress=False)  # fmt: skip
    assert evaluate(MLP, result.params, X, Y)["accuracy"] >= 0.99
    assert result.history["train_accuracy"][-1] >= 0.98

    res_lin = fit(LIN_OBJ, _init(LIN), LIN_SGD, X, Y, key=jax.random.key(0), epochs=300,
                  batch_size=300, progress=False)  # fmt: skip
    assert 0.35 <= res_lin.history["train_accuracy"][-1] <= 0.65


def test_same_key_gives_bit_identical_params_and_caller_params_survive():
    params = _init(SMALL)
    kwargs = dict(key=jax.random.key(3), epochs=3, batch_size=30, progress=False)
    a = fit(SMALL_OBJ, params, SGD, X, Y, **kwargs)
    b = fit(SMALL_OBJ, params, SGD, X, Y, **kwargs)  # params were not donated away
    chex.assert_trees_all_equal(a.params, b.params)
    assert a.history["train_loss"] == b.history["train_loss"]
    c = fit(SMALL_OBJ, params, SGD, X, Y, **{**kwargs, "key": jax.random.key(4)})
    assert not _leaves_equal(a.params, c.params)
    assert np.isfinite(np.asarray(params["dense_0"]["w"])).all()


def test_sgd_batch_one_and_full_batch_go_through_fit():
    x, y = X[::10], Y[::10]  # 30 examples
    params = _init(LIN)
    sgd = fit(LIN_OBJ, params, LIN_SGD, x, y, key=jax.random.key(0), epochs=2, batch_size=1,
              progress=False).history  # fmt: skip
    assert sgd["steps"] == [30, 60] and sgd["examples_seen"] == [30, 60]
    full = fit(LIN_OBJ, params, LIN_SGD, x, y, key=jax.random.key(0), epochs=3, batch_size=30,
               progress=False).history  # fmt: skip
    assert full["steps"] == [1, 2, 3] and full["examples_seen"] == [30, 60, 90]
    assert full["train_loss"][-1] < full["train_loss"][0]


def test_full_batch_fit_equals_plain_gradient_descent():
    params = _init(LIN)
    res = fit(LIN_OBJ, params, LIN_SGD, X, Y, key=jax.random.key(0), epochs=4, batch_size=300,
              progress=False)  # fmt: skip

    @jax.jit
    def gd(w):
        g = jax.grad(lambda p: softmax_cross_entropy(LIN.apply(p, X), Y))(w)
        return jax.tree.map(lambda a, b: a - 0.5 * b, w, g)

    w = params
    for _ in range(4):
        w = gd(w)
    chex.assert_trees_all_close(res.params, w, rtol=1e-5, atol=1e-6)


def _index_objective(params, state, x, y, key, *, train=True):
    """Loss = batch mean of w[x_i]: after one SGD(lr=1) epoch w[i] = -1/|batch of i|."""
    del y, key, train
    loss = jnp.mean(params["w"][x])
    return loss, (state, {"loss": loss})


@pytest.mark.parametrize("remainder", ["keep", "drop"])
def test_remainder_keep_uses_every_example_once_drop_skips_the_rest(remainder):
    n, b = 10, 4
    x = jnp.arange(n, dtype=jnp.int32)
    res = fit(_index_objective, {"w": jnp.zeros((n,), jnp.float32)}, optax.sgd(1.0), x, x,
              key=jax.random.key(0), epochs=1, batch_size=b, remainder=remainder,
              progress=False)  # fmt: skip
    w = np.asarray(res.params["w"])
    plan = batch_plan(n, b, remainder)
    if remainder == "keep":
        assert plan == (2, 2, 0, 4) and res.history["steps"] == [3]
        assert sorted(np.round(-1 / w).astype(int).tolist()) == [2, 2, 4, 4, 4, 4, 4, 4, 4, 4]
    else:
        assert plan == (2, 0, 2, 4) and res.history["steps"] == [2]
        assert (w == 0).sum() == 2 and np.allclose(w[w != 0], -0.25)
    assert res.history["examples_seen"] == [plan.examples]


def test_epoch_compiles_once_across_epochs_and_fit_calls():
    traces = []

    def counting(params, state, x, y, key, *, train=True):
        traces.append(x.shape)
        return MLP_OBJ(params, state, x, y, key, train=train)

    params, opt = _init(MLP), optax.sgd(0.1)
    kw = dict(epochs=3, batch_size=64, progress=False)  # 300 = 4 * 64 + 44: scan + tail
    fit(counting, params, opt, X, Y, key=jax.random.key(0), **kw)
    # One abstract trace (picks the driver, finds the metrics), the scan body once, the
    # last smaller batch once.
    assert traces == [(64, 2), (64, 2), (44, 2)]
    res = fit(counting, params, opt, X, Y, key=jax.random.key(1), **kw)
    assert len(traces) == 3  # same shapes, objective and optimizer: nothing retraced
    assert res.history["epoch"] == [1, 2, 3]


def test_regularized_objective_shrinks_weights():
    params = _init(MLP)
    plain = fit(MLP_OBJ, params, ADAM, X, Y, key=jax.random.key(0), epochs=40, batch_size=300,
                progress=False)  # fmt: skip
    reg_obj = supervised(MLP, softmax_cross_entropy, penalty=lambda p: 1e-2 * l2(p))
    reg = fit(reg_obj, params, ADAM, X, Y, key=jax.random.key(0), epochs=40, batch_size=300,
              progress=False)  # fmt: skip
    assert float(l2(reg.params)) < 0.8 * float(l2(plain.params))
    h = reg.history
    np.testing.assert_allclose(
        h["train_objective"], np.add(h["train_loss"], h["train_penalty"]), rtol=1e-5
    )


def test_validation_metrics_recorded_and_match_evaluate():
    xv, yv = _spiral(20, jax.random.key(7))
    res = fit(MLP_OBJ, _init(MLP), ADAM, X, Y, key=jax.random.key(0), epochs=5, batch_size=300,
              validation=(xv, yv), eval_batch_size=25, progress=False)  # fmt: skip
    h = res.history
    assert len(h["val_loss"]) == len(h["val_accuracy"]) == 5 == len(h["epoch"])
    ev = evaluate(MLP, res.params, xv, yv, batch_size=7)
    np.testing.assert_allclose(h["val_loss"][-1], ev["loss"], rtol=1e-5)
    np.testing.assert_allclose(h["val_accuracy"][-1], ev["accuracy"], rtol=1e-6)
    assert len(h["epoch_time"]) == len(h["wall_time"]) == 5
    assert h["wall_time"] == sorted(h["wall_time"])


def test_evaluate_equals_full_batch_computation():
    params = _init(MLP, key=5)
    x, y = X[:103], Y[:103]
    scores = MLP.apply(params, x)
    got = evaluate(MLP, params, x, y, batch_size=10)  # 10 full batches + one of 3
    wrong = int(jnp.sum(jnp.argmax(scores, -1) != y))
    np.testing.assert_allclose(got["loss"], float(softmax_cross_entropy(scores, y)), rtol=1e-5)
    assert got["error_count"] == wrong and got["n"] == 103
    assert got["accuracy"] == pytest.approx(1 - wrong / 103)


def test_batchnorm_state_trains_and_changes_only_in_training():
    model = fnet.serial(fnet.Dense(16), fnet.BatchNorm(momentum=0.9), fnet.Relu(), fnet.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 2))
    obj = supervised(model, softmax_cross_entropy)
    res = fit(obj, params, SGD, X, Y, key=jax.random.key(0), state=state, epochs=2,
              batch_size=100, progress=False)  # fmt: skip
    assert not _leaves_equal(res.state, state)
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]
    loss, (same, m) = jax.jit(partial(obj, train=False))(res.params, res.state, X, Y, None)
    chex.assert_trees_all_equal(same, res.state)
    ev = evaluate(model, res.params, X, Y, state=res.state, batch_size=64)
    np.testing.assert_allclose(ev["loss"], loss, rtol=1e-5)
    assert ev["accuracy"] == pytest.approx(float(m["accuracy"]))
    with pytest.raises(ValueError, match="pass the state"):
        fit(obj, params, SGD, X, Y, key=jax.random.key(0), epochs=1, batch_size=100,
            progress=False)  # fmt: skip


# ------------------------------------------------------------------------ hooks, progress


def test_hooks_get_epoch_params_state_every_k_epochs():
    seen, every_two = [], []
    fit(SMALL_OBJ, _init(SMALL), SGD, X, Y, key=jax.random.key(3), epochs=4, batch_size=30,
        progress=False,
        on_epoch_end=[lambda e, p, s: seen.append((e, jax.device_get(p), s)),
                      every_k_epochs(2, lambda e, p, s: every_two.append(e))])  # fmt: skip
    assert [e for e, _, _ in seen] == [1, 2, 3, 4] and every_two == [2, 4]
    assert seen[0][2] == {} and not _leaves_equal(seen[0][1], seen[1][1])


def test_progress_bar_writes_per_epoch_to_a_given_stream_and_is_off_otherwise(capsys):
    stream = io.StringIO()
    fit(SMALL_OBJ, _init(SMALL), SGD, X, Y, key=jax.random.key(3), epochs=3, batch_size=30,
        progress=stream)  # fmt: skip
    text = stream.getvalue()
    assert "3/3" in text and "loss=" in text and "acc=" in text
    fit(SMALL_OBJ, _init(SMALL), SGD, X, Y, key=jax.random.key(3), epochs=1, batch_size=30)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # not a TTY: no bar


# ------------------------------------------------------------------------ errors


def _count_traces():
    calls = []

    def obj(params, state, x, y, key, *, train=True):
        calls.append(1)
        return SMALL_OBJ(params, state, x, y, key, train=train)

    return obj, calls


@pytest.mark.parametrize(
    ("x", "y", "batch_size", "error", "match"),
    [
        (X, Y, 301, ValueError, "larger than the 300"),
        (X, Y, 0, ValueError, "fit: batch_size must be >= 1, got 0"),
        (X, Y, -3, ValueError, "fit: batch_size must be >= 1, got -3"),
        (X, Y, 2.0, TypeError, "fit: batch_size must be an int >= 1, got 2.0 of type float"),
        (X, Y, True, TypeError, "fit: batch_size must be an int >= 1, got True of type bool"),
        (X, Y[:299], 32, ShapeError, "same number of examples"),
        (X, Y[0], 32, ShapeError, "leading batch axis"),
    ],
    ids=["too-big", "zero", "negative", "float", "bool", "lengths-differ", "y-scalar"],
)
def test_bad_arguments_raise_before_tracing(x, y, batch_size, error, match):
    obj, calls = _count_traces()
    with pytest.raises(error, match=match):
        fit(obj, _init(SMALL), SGD, x, y, key=jax.random.key(0), epochs=1,
            batch_size=batch_size, progress=False)  # fmt: skip
    assert calls == []


def test_labels_of_wrong_rank_raise_a_clear_error_while_tracing():
    with pytest.raises(ValueError, match=r"labels\[:, 0\]"):
        fit(SMALL_OBJ, _init(SMALL), SGD, X, Y[:, None], key=jax.random.key(0), epochs=1,
            batch_size=30, progress=False)  # fmt: skip


def test_other_bad_arguments():
    p = _init(SMALL)
    with pytest.raises(ValueError, match="remainder"):
        fit(SMALL_OBJ, p, SGD, X, Y, key=jax.random.key(0), epochs=1, batch_size=30,
            remainder="pad", progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="PRNG key"):
        fit(SMALL_OBJ, p, SGD, X, Y, key=0, epochs=1, batch_size=30)
    with pytest.raises(ValueError, match="epochs"):
        fit(SMALL_OBJ, p, SGD, X, Y, key=jax.random.key(0), epochs=-1, batch_size=30)
    with pytest.raises(TypeError, match="train"):
        fit(lambda p_, s, x, y, k: SMALL_OBJ(p_, s, x, y, k), p, SGD, X, Y,
            key=jax.random.key(0), epochs=1, batch_size=30, validation=(X, Y))  # fmt: skip
    with pytest.raises(TypeError, match="fit: epochs must be an int >= 0, got True of type bool"):
        fit(SMALL_OBJ, p, SGD, X, Y, key=jax.random.key(0), epochs=True, batch_size=30)
    with pytest.raises(ValueError, match="every_k_epochs: k must be >= 1, got 0"):
        every_k_epochs(0, print)
    with pytest.raises(TypeError, match="every_k_epochs: k must be an int >= 1, got True"):
        every_k_epochs(True, print)
