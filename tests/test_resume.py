"""Tests of ``fit(..., checkpoint_dir=...)``: saving every few epochs and resuming.

Every fit here shares one objective, optimizer, batch size and data shape, so the epoch
is compiled once for the module (a busy CPU makes compiles the slow part). The data are
tiny (48 examples, 3 steps per epoch, no tail batch: a tail would compile the step twice),
and the mismatching model's params are built with NumPy rather than initialised.
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import optax
import pytest

import fnet
from fnet import checkpoint
from fnet.errors import CheckpointError
from fnet.losses import softmax_cross_entropy
from fnet.train import fit, supervised

MODEL = fnet.models.mlp([16], 3, dropout=0.2)  # dropout: the per-step keys matter
OBJ = supervised(MODEL, softmax_cross_entropy)
ADAM = optax.adam(1e-2)
KEY = jax.random.key(7)
_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(48, 4)).astype(np.float32)
Y = _RNG.integers(0, 3, 48).astype(np.int32)
KW = dict(batch_size=16, progress=False)  # 48 = 3 * 16


def _params(seed: int = 0):
    return MODEL.init(jax.random.key(seed), (-1, 4))[1]


def _fit(epochs: int, ckpt=None, *, params=None, key=KEY, **kw):
    params = _params() if params is None else params
    return fit(OBJ, params, ADAM, X, Y, key=key, epochs=epochs, checkpoint_dir=ckpt, **KW, **kw)


def _is_shape(s) -> bool:
    return isinstance(s, tuple)


@pytest.fixture(scope="module")
def uninterrupted():
    return _fit(4)


def test_resumed_fit_is_bit_identical_to_an_uninterrupted_run(tmp_path, uninterrupted):
    first = _fit(2, tmp_path)
    assert checkpoint.all_steps(tmp_path) == [1, 2]
    # A fresh call (new params from another seed: the checkpoint wins) resumes at epoch 2.
    resumed = _fit(4, tmp_path, params=_params(seed=99))
    chex.assert_trees_all_equal(resumed[:3], uninterrupted[:3])
    assert checkpoint.all_steps(tmp_path) == [2, 3, 4]  # keep=3
    for name in ("epoch", "steps", "examples_seen", "train_loss", "train_objective"):
        assert resumed.history[name] == uninterrupted.history[name], name
    assert resumed.history["epoch_time"][:2] == first.history["epoch_time"]
    assert resumed.history["wall_time"][2] >= first.history["wall_time"][1]


def test_fit_killed_mid_run_resumes_from_its_last_checkpoint(tmp_path, uninterrupted):
    def crash(epoch, params, state):
        if epoch == 3:
            raise KeyboardInterrupt("simulated crash after epoch 3, before its checkpoint")

    with pytest.raises(KeyboardInterrupt):
        _fit(4, tmp_path, on_epoch_end=crash)
    assert checkpoint.latest_step(tmp_path) == 2
    chex.assert_trees_all_equal(_fit(4, tmp_path)[:3], uninterrupted[:3])


def test_every_and_keep_choose_which_epochs_are_saved(tmp_path):
    _fit(5, tmp_path, every=2, keep=None)
    assert checkpoint.all_steps(tmp_path) == [2, 4, 5]  # every 2, and the last epoch
    other = tmp_path / "keep1"
    _fit(3, other, keep=1)
    assert checkpoint.all_steps(other) == [3]


def test_checkpoint_holds_the_train_state_key_history_and_run_fingerprint(tmp_path):
    result = _fit(1, tmp_path, extra={"hidden": [16]})
    manifest = checkpoint.read_manifest(tmp_path)
    info = manifest["extra"]["fit"]
    assert info["layout"] == 2 and info["epochs"] == 1 and info["finite"] is True
    fingerprint = info["fingerprint"]
    assert fingerprint["batching"] == {"batch_size": "16", "remainder": "keep"}
    assert fingerprint["data"] == {"x": "(48, 4) float32", "y": "(48,) int32"}
    assert manifest["extra"]["history"]["train_loss"] == result.history["train_loss"]
    assert manifest["extra"]["extra"] == {"hidden": [16]}
    paths = {leaf["path"] for leaf in manifest["leaves"]}
    assert {"['key']", "['step']", "['params']['dense_0']['w']"} <= paths
    # The optimizer state is a dict keyed by optax's pytree paths.
    assert "['opt_state'][\"[0].mu['dense_0']['w']\"]" in paths


def test_a_completed_run_is_returned_without_training(tmp_path):
    done = _fit(2, tmp_path)
    again = _fit(2, tmp_path, params=_params(seed=5))
    chex.assert_trees_all_equal(again[:3], done[:3])
    assert again.history["epoch"] == [1, 2]
    assert checkpoint.all_steps(tmp_path) == [1, 2]


def test_checkpoint_of_another_model_raises_checkpoint_error(tmp_path):
    _fit(1, tmp_path)
    # The params of fnet.models.mlp([32], 3): the restore fails before anything compiles.
    shapes = {"dense_0": {"w": (4, 32), "b": (32,)}, "dense_1": {"w": (32, 3), "b": (3,)}}
    wider = jax.tree.map(lambda s: np.zeros(s, np.float32), shapes, is_leaf=_is_shape)
    with pytest.raises(CheckpointError, match="dense_0"):
        _fit(2, tmp_path, params=wider)


def test_checkpoint_of_another_optimizer_raises_checkpoint_error(tmp_path):
    _fit(1, tmp_path)
    with pytest.raises(CheckpointError):
        fit(OBJ, _params(), optax.sgd(0.1), X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path,
            **KW)  # fmt: skip


def test_checkpoint_of_another_key_or_batch_size_raises_checkpoint_error(tmp_path):
    _fit(1, tmp_path)
    with pytest.raises(CheckpointError, match=r"another run.*key"):
        _fit(2, tmp_path, key=jax.random.key(8))
    with pytest.raises(CheckpointError, match="batch_size: checkpoint 16, now 10"):
        fit(OBJ, _params(), ADAM, X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path,
            batch_size=10, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every": 0}, ValueError, r"fit: every \(epochs\) must be >= 1, got 0"),
        ({"every": -1}, ValueError, r"fit: every \(epochs\) must be >= 1, got -1"),
        ({"every": 1.5}, TypeError, r"fit: every \(epochs\) must be an int >= 1, got 1.5"),
        ({"every": True}, TypeError, r"fit: every \(epochs\) must be an int >= 1, got True"),
        ({"keep": 0}, ValueError, r"fit: keep must be >= 1, got 0"),
        ({"keep": True}, TypeError, r"fit: keep must be None or an int >= 1, got True"),
    ],
)
def test_bad_every_or_keep_raises_before_anything_is_written(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        _fit(1, tmp_path / "ckpt", **kwargs)
    assert not (tmp_path / "ckpt").exists()


# ------------------------------------------------------------ resume that cannot lie
# The three stale cases of issue 11 each raise before anything compiles or changes on disk.


def test_resume_with_another_learning_rate_raises_naming_it(tmp_path):
    _fit(1, tmp_path)
    with pytest.raises(CheckpointError, match=r"optimizer.*step_size: checkpoint -0.01, now -0.03"):
        fit(OBJ, _params(), optax.adam(3e-2), X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path,
            **KW)  # fmt: skip
    assert checkpoint.all_steps(tmp_path) == [1]


def test_resume_with_another_activation_of_the_same_shapes_raises(tmp_path):
    _fit(1, tmp_path)
    tanh = supervised(fnet.models.mlp([16], 3, "tanh", dropout=0.2), softmax_cross_entropy)
    with pytest.raises(CheckpointError, match=r"another run.*model.*relu"):
        fit(tanh, _params(), ADAM, X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path, **KW)


def test_fewer_epochs_than_the_checkpoint_raises_instead_of_returning_it(tmp_path):
    _fit(3, tmp_path)
    with pytest.raises(CheckpointError, match=r"already trained 3 epochs.*epochs=2"):
        _fit(2, tmp_path)
    assert checkpoint.all_steps(tmp_path) == [1, 2, 3]


def test_an_inject_hyperparams_learning_rate_is_named_in_the_difference(tmp_path):
    def adam(lr):
        return optax.inject_hyperparams(optax.adam)(learning_rate=lr)

    # The fingerprint is checked before compiling: no epoch of these runs is trained twice.
    fit(OBJ, _params(), adam(1e-3), X, Y, key=KEY, epochs=1, checkpoint_dir=tmp_path, **KW)
    with pytest.raises(CheckpointError, match=r"hyperparams.learning_rate"):
        fit(OBJ, _params(), adam(3e-2), X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path,
            **KW)  # fmt: skip


def test_resuming_prints_one_line_naming_the_epochs(tmp_path, capsys):
    _fit(1, tmp_path)
    capsys.readouterr()
    _fit(2, tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fit: resuming from epoch 1 of 2 ({tmp_path})"]


def test_another_run_is_refused_and_its_checkpoints_are_not_pruned(tmp_path):
    _fit(2, tmp_path, keep=1, extra={"run": "a"})
    assert checkpoint.all_steps(tmp_path) == [2]
    with pytest.raises(CheckpointError, match=r"extra\['run'\]: checkpoint 'a', now 'b'"):
        _fit(3, tmp_path, keep=1, extra={"run": "b"})
    assert checkpoint.all_steps(tmp_path) == [2]


def test_resume_force_continues_another_run_and_fresh_starts_over(tmp_path, capsys):
    _fit(1, tmp_path, extra={"run": "a"})
    forced = _fit(2, tmp_path, extra={"run": "b"}, resume="force")
    assert forced.history["epoch"] == [1, 2]
    assert "resume='force'" in capsys.readouterr().err
    fresh = _fit(1, tmp_path, extra={"run": "c"}, resume="fresh")
    assert fresh.history["epoch"] == [1]
    assert checkpoint.all_steps(tmp_path) == [1]  # the old run's epochs 1-2 are gone
    assert checkpoint.read_manifest(tmp_path)["extra"]["extra"] == {"run": "c"}


def test_resume_fresh_refuses_to_delete_checkpoints_fit_did_not_write(tmp_path):
    checkpoint.save(tmp_path, 7, {"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match=r"not written by fnet.train.fit"):
        _fit(1, tmp_path, resume="fresh")
    assert checkpoint.all_steps(tmp_path) == [7]


@pytest.mark.parametrize("bad", [{"resume": "yes"}, {"on_nonfinite": "ignore"}])
def test_bad_resume_or_on_nonfinite_raises_value_error(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        _fit(1, tmp_path, **bad)


def test_restore_params_needs_neither_optimizer_nor_model(tmp_path):
    result = _fit(1, tmp_path, extra={"hidden": [16], "classes": 3})
    restored = fnet.train.restore_params(tmp_path)
    chex.assert_trees_all_equal(restored.params, result.params)
    assert restored.state == {} and restored.step == 1
    assert restored.extra == {"hidden": [16], "classes": 3}
    assert restored.history["epoch"] == [1]
    logits = MODEL.apply(restored.params, X)  # usable as they are
    assert logits.shape == (48, 3)


def test_restore_params_rejects_a_checkpoint_without_params(tmp_path):
    checkpoint.save(tmp_path, 1, {"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match="no 'params'"):
        fnet.train.restore_params(tmp_path)


# ------------------------------------------------------------------ non-finite guard

X_NAN = X.copy()
X_NAN[0] = np.nan  # every epoch's batch holding example 0 gives a NaN loss and params


def test_a_nan_run_stops_at_its_first_nan_epoch_and_keeps_the_finite_checkpoint(tmp_path):
    good = _fit(2, tmp_path)
    with pytest.raises(fnet.train.NonFiniteError, match=r"epoch 3 \(optimizer steps 7-9\)") as e:
        fit(OBJ, _params(), ADAM, X_NAN, Y, key=KEY, epochs=4, checkpoint_dir=tmp_path, **KW)
    assert checkpoint.all_steps(tmp_path) == [1, 2]  # nothing saved for the NaN epoch
    err = e.value
    assert err.epoch == 3 and err.steps == (7, 9)
    assert err.history["epoch"] == [1, 2, 3] and np.isnan(err.history["train_loss"][-1])
    assert err.result.history["epoch"] == [1, 2]
    chex.assert_trees_all_equal(err.result.params, good.params)  # the last finite params


def test_nonfinite_warn_trains_on_and_keep_never_prunes_the_last_finite_checkpoint(tmp_path):
    _fit(2, tmp_path, keep=1)
    with pytest.warns(fnet.train.NonFiniteWarning) as caught:
        out = fit(OBJ, _params(), ADAM, X_NAN, Y, key=KEY, epochs=4, checkpoint_dir=tmp_path,
                  keep=1, on_nonfinite="warn", **KW)  # fmt: skip
    assert ["epoch 3 " in str(w.message) for w in caught] == [True, False]
    assert out.history["epoch"] == [1, 2, 3, 4]
    assert checkpoint.all_steps(tmp_path) == [2, 4]  # the newest, and the newest finite one
    assert checkpoint.read_manifest(tmp_path, step=4)["extra"]["fit"]["finite"] is False
