"""Tests of the training-loop pieces around ``fit``: hooks that stop, early stopping,
keep-best, metric logs and batched prediction.

One tiny model, optimizer and data shape for the whole module, so ``fit``'s epoch compiles
once (a busy CPU makes compiles the slow part).
"""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import optax
import pytest

import fnet
from fnet import checkpoint
from fnet.losses import softmax_cross_entropy
from fnet.train import (
    CSVLogger,
    EarlyStopping,
    JSONLLogger,
    KeepBest,
    StopTraining,
    TensorBoardLogger,
    fit,
    predict,
    supervised,
)

MODEL = fnet.serial(fnet.Dense(8), fnet.Relu(), fnet.Dense(3))
OBJ = supervised(MODEL, softmax_cross_entropy)
SGD = optax.sgd(0.1)
KEY = jax.random.key(0)
_RNG = np.random.default_rng(1)
X = _RNG.normal(size=(32, 4)).astype(np.float32)
Y = _RNG.integers(0, 3, 32).astype(np.int32)
PARAMS = MODEL.init(jax.random.key(1), (-1, 4))[1]


def _fit(epochs, **kw):
    return fit(OBJ, PARAMS, SGD, X, Y, key=KEY, epochs=epochs, batch_size=16, progress=False,
               **kw)  # fmt: skip


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb, strict=True))


def _scripted(name, values):
    """A hook that writes a made-up metric into the history, to drive the callbacks."""

    def hook(epoch, params, state, *, history):
        history.setdefault(name, []).append(values[epoch - 1])

    return hook


class _Recorder:
    def __init__(self):
        self.params = {}

    def __call__(self, epoch, params, state):
        self.params[epoch] = jax.device_get(params)


# ------------------------------------------------------------------ stopping hooks


def test_a_hook_returning_stop_training_ends_fit_normally_with_its_history(tmp_path):
    def stop_at_2(epoch, params, state):
        return StopTraining("enough") if epoch == 2 else None

    out = _fit(5, on_epoch_end=stop_at_2, checkpoint_dir=tmp_path)
    assert out.history["epoch"] == [1, 2] and out.history["stopped"] == "enough"
    assert checkpoint.all_steps(tmp_path) == [1, 2]
    assert checkpoint.read_manifest(tmp_path)["extra"]["fit"]["stopped"] == "enough"
    again = _fit(5, on_epoch_end=stop_at_2, checkpoint_dir=tmp_path)  # a stopped run is done
    assert again.history["epoch"] == [1, 2] and _same(again.params, out.params)


def test_a_truthy_return_value_that_is_not_stop_training_does_not_stop():
    out = _fit(2, on_epoch_end=lambda epoch, params, state: True)
    assert out.history["epoch"] == [1, 2] and "stopped" not in out.history


def test_early_stopping_returns_the_best_epochs_params_when_asked():
    rec = _Recorder()
    stopper = EarlyStopping("fake", patience=1, restore_best=True)
    hooks = [_scripted("fake", [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]), rec, stopper]
    out = _fit(6, on_epoch_end=hooks)
    # Best at epoch 2; epochs 3 and 4 do not improve: 2 > patience=1, stop after epoch 4.
    assert out.history["epoch"] == [1, 2, 3, 4]
    assert stopper.best_epoch == 2 and stopper.stopped_epoch == 4
    assert "did not improve for 1 epochs" in out.history["stopped"]
    assert _same(out.params, rec.params[2])
    assert not _same(out.params, rec.params[4])


def test_early_stopping_without_restore_best_returns_the_last_params():
    rec = _Recorder()
    hooks = [_scripted("fake", [1.0, 0.5, 0.7, 0.8]), rec, EarlyStopping("fake", patience=1)]
    out = _fit(4, on_epoch_end=hooks)
    assert out.history["epoch"] == [1, 2, 3, 4] and _same(out.params, rec.params[4])


def test_early_stopping_modes_and_min_delta_follow_keras():
    stop = EarlyStopping("val_accuracy", patience=0)  # "auto": accuracy is maximised
    history = {"epoch": [1, 2], "val_accuracy": [0.5, 0.4]}
    assert isinstance(stop(2, {}, {}, history=history), StopTraining)
    stop = EarlyStopping("val_loss", patience=0, min_delta=0.1)
    history = {"epoch": [1, 2], "val_loss": [1.0, 0.95]}  # better by less than min_delta
    assert isinstance(stop(2, {}, {}, history=history), StopTraining)
    history = {"epoch": [1, 2], "val_loss": [1.0, 0.8]}
    assert stop(2, {}, {}, history=history) is None


@pytest.mark.parametrize(
    ("patience", "error", "match"),
    [
        (-1, ValueError, r"EarlyStopping: patience must be >= 0, got -1"),
        (True, TypeError, r"EarlyStopping: patience must be an int >= 0, got True"),
        (1.0, TypeError, r"EarlyStopping: patience must be an int >= 0, got 1.0"),
    ],
)
def test_early_stopping_rejects_a_patience_that_is_not_an_int_ge_0(patience, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping("val_loss", patience=patience)


def test_early_stopping_names_the_missing_metric():
    with pytest.raises(KeyError, match=r"val_loss.*validation="):
        _fit(1, on_epoch_end=EarlyStopping("val_loss"))


def test_keep_best_keeps_and_saves_the_best_params(tmp_path):
    rec, best = _Recorder(), KeepBest("fake", mode="max", directory=tmp_path)
    _fit(4, on_epoch_end=[_scripted("fake", [0.1, 0.3, 0.2, 0.25]), rec, best])
    assert best.epoch == 2 and best.value == 0.3
    assert _same(best.params, rec.params[2])
    restored = fnet.train.restore_params(tmp_path)
    assert restored.step == 2 and _same(restored.params, rec.params[2])
    assert restored.extra == {"monitor": "fake", "value": 0.3, "epoch": 2}


def test_every_k_epochs_passes_history_and_stop_through():
    def stop(epoch, params, state, *, history):
        return StopTraining(f"seen {len(history['epoch'])}")

    out = _fit(5, on_epoch_end=fnet.train.every_k_epochs(2, stop))
    assert out.history["epoch"] == [1, 2] and out.history["stopped"] == "seen 2"


# ------------------------------------------------------------------ metric logs


def test_jsonl_log_has_one_line_per_epoch_matching_the_history(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    out = _fit(3, on_epoch_end=JSONLLogger(path))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["train_loss"] for r in rows] == out.history["train_loss"]


def test_logs_are_written_during_training_not_at_the_end(tmp_path):
    path, seen = tmp_path / "m.jsonl", []
    _fit(2, on_epoch_end=[JSONLLogger(path), lambda e, p, s: seen.append(path.read_text())])
    assert [text.count("\n") for text in seen] == [1, 2]


def test_csv_log_mirrors_the_history_also_across_a_resume(tmp_path):
    path, ckpt = tmp_path / "m.csv", tmp_path / "ckpt"
    _fit(2, on_epoch_end=CSVLogger(path), checkpoint_dir=ckpt)
    out = _fit(4, on_epoch_end=CSVLogger(path), checkpoint_dir=ckpt)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["train_loss"]) for r in rows] == out.history["train_loss"]


def test_tensorboard_logger_writes_an_event_file(tmp_path):
    pytest.importorskip("tensorboardX", reason="optional extra fnet[tensorboard] not installed")
    logger = TensorBoardLogger(tmp_path)
    _fit(2, on_epoch_end=logger)
    logger.close()
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1 and b"train_loss" in events[0].read_bytes()


# ------------------------------------------------------------------ predict


@pytest.mark.parametrize("batch_size", [5, 32, 1000])  # a tail of 2; one batch; clipped
def test_predict_equals_apply_in_batches(batch_size):
    out = predict(MODEL, PARAMS, X, batch_size=batch_size)
    assert out.shape == (32, 3)
    np.testing.assert_allclose(out, MODEL.apply(PARAMS, X), rtol=1e-6, atol=1e-6)


def test_predict_uses_a_stateful_models_running_statistics():
    model = fnet.serial(fnet.Dense(4), fnet.BatchNorm())
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    state = jax.tree.map(lambda a: a + 0.5, state)
    out = predict(model, params, X, state=state, batch_size=7)
    want, _ = model.apply(params, state, X, train=False)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="state"):
        predict(model, params, X)


def test_predict_rejects_inputs_without_examples():
    with pytest.raises(fnet.errors.ShapeError):
        predict(MODEL, PARAMS, np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        predict(MODEL, PARAMS, X, batch_size=0)


def test_keep_best_refuses_a_directory_holding_other_checkpoints(tmp_path):
    _fit(1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="directory of its own"):
        _fit(2, on_epoch_end=KeepBest("train_loss", directory=tmp_path))
    assert checkpoint.all_steps(tmp_path) == [1]
