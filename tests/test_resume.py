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


def test_checkpoint_holds_the_train_state_key_history_and_fit_settings(tmp_path):
    result = _fit(1, tmp_path)
    manifest = checkpoint.read_manifest(tmp_path)
    assert manifest["extra"]["fit"] == {"n_examples": 48, "batch_size": 16, "remainder": "keep"}
    assert manifest["extra"]["history"]["train_loss"] == result.history["train_loss"]
    paths = {leaf["path"] for leaf in manifest["leaves"]}
    assert "['key']" in paths and "['train_state'].step" in paths
    assert "['train_state'].params['dense_0']['w']" in paths


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
    with pytest.raises(CheckpointError, match="another key"):
        _fit(2, tmp_path, key=jax.random.key(8))
    with pytest.raises(CheckpointError, match="batch_size: checkpoint 16, now 10"):
        fit(OBJ, _params(), ADAM, X, Y, key=KEY, epochs=2, checkpoint_dir=tmp_path,
            batch_size=10, progress=False)  # fmt: skip


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_bad_every_raises_value_error(tmp_path, every):
    with pytest.raises(ValueError, match="every"):
        _fit(1, tmp_path, every=every)
