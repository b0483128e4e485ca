"""Tests for fnet.checkpoint: round trips, strict restore, no code execution, atomicity."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from checkpoint_writer import expected_tree

from fnet import checkpoint
from fnet.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("checkpoint_writer.py")


def _params() -> dict:
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "dense_0": {
            "w": jax.random.normal(k1, (4, 3), jnp.float32),
            "b": jnp.zeros((3,), jnp.float32),
        },
        "dense_1": {"w": jax.random.normal(k2, (3, 2), jnp.float32), "b": jnp.ones((2,))},
    }


def _train_state(optimizer: optax.GradientTransformation) -> dict:
    """params + an optimizer state after two real updates + typed and legacy keys."""

    @jax.jit
    def two_updates(params):
        opt_state = optimizer.init(params)
        for _ in range(2):
            grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state

    params, opt_state = two_updates(_params())
    return {
        "params": params,
        "opt_state": opt_state,
        "key": jax.random.split(jax.random.key(42))[1],
        "legacy_key": jax.random.PRNGKey(7),
        "step": np.asarray(2, dtype=np.int64),
    }


def _assert_bit_identical(a, b) -> None:
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    assert ta == tb
    for (path, x), (_, y) in zip(la, lb, strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype, path
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        assert x.tobytes() == y.tobytes(), jax.tree_util.keystr(path)


@pytest.mark.parametrize(
    "optimizer",
    [optax.adam(1e-3), optax.sgd(0.1, momentum=0.9)],
    ids=["adam", "sgd_momentum"],
)
def test_round_trip_of_params_opt_state_keys_step_and_extra_is_bit_identical(tmp_path, optimizer):
    state = _train_state(optimizer)
    extra = {"history": {"loss": [2.5, 1.25, float("nan")]}, "config": {"widths": [4, 3, 2]}}
    path = checkpoint.save(tmp_path, 2, state, extra=extra)
    assert path == tmp_path / "step_000000002"
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "manifest.json"]

    for like in (state, jax.eval_shape(lambda: state)):
        restored, restored_extra = checkpoint.restore(tmp_path, like)
        _assert_bit_identical(restored, state)
        assert restored_extra["config"] == extra["config"]
        assert restored_extra["history"]["loss"][:2] == [2.5, 1.25]
        assert np.isnan(restored_extra["history"]["loss"][2])
    # Documented leaf types: NumPy arrays (writable), typed keys as jax key arrays.
    assert isinstance(restored["params"]["dense_0"]["w"], np.ndarray)
    assert restored["params"]["dense_0"]["w"].flags.writeable
    assert isinstance(restored["key"], jax.Array)
    assert checkpoint.read_manifest(tmp_path)["step"] == 2


def test_restored_optimizer_state_continues_training_identically(tmp_path):
    optimizer = optax.adam(1e-2)
    state = _train_state(optimizer)
    checkpoint.save(tmp_path, 2, state)
    restored, _ = checkpoint.restore(tmp_path, jax.eval_shape(lambda: state))

    def step(params, opt_state):
        grads = jax.tree.map(lambda p: jnp.sin(p), params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    a = jax.jit(step)(state["params"], state["opt_state"])
    b = jax.jit(step)(restored["params"], restored["opt_state"])
    _assert_bit_identical(a, b)


def test_bfloat16_and_float8_round_trip_with_their_own_dtypes(tmp_path):
    tree = {
        "bf16": np.linspace(-3, 3, 7).astype(ml_dtypes.bfloat16),
        "f8": np.linspace(-3, 3, 5).astype(ml_dtypes.float8_e4m3fn),
        "jax_bf16": jnp.arange(4, dtype=jnp.bfloat16),
    }
    checkpoint.save(tmp_path, 0, tree)
    restored, _ = checkpoint.restore(tmp_path, tree)
    _assert_bit_identical(restored, tree)


def test_restore_into_wrong_shape_names_the_first_mismatching_path(tmp_path):
    state = _train_state(optax.sgd(0.1, momentum=0.9))
    checkpoint.save(tmp_path, 2, state)
    like = jax.eval_shape(lambda: state)
    like["params"]["dense_1"]["w"] = jax.ShapeDtypeStruct((5, 2), jnp.float32)
    like["params"]["dense_1"]["b"] = jax.ShapeDtypeStruct((5,), jnp.float32)
    with pytest.raises(CheckpointError) as info:
        checkpoint.restore(tmp_path, like)
    msg = str(info.value)
    # opt_state precedes params in flatten order; its trace has the original shapes, so the
    # first mismatch in `like`'s order is params/dense_1/b.
    assert "['params']['dense_1']['b']" in msg
    assert "(2,)" in msg and "(5,)" in msg
    assert "1 more mismatching" in msg
    assert "Nothing was reshaped or cast" in msg


@pytest.mark.parametrize(
    "leaf, like_dtype, stored",
    [
        ("w", jnp.float64, "float32"),
        ("w", jnp.bfloat16, "float32"),
        ("key", jnp.uint32, "key<fry>"),
    ],
)
def test_restore_into_wrong_dtype_names_the_path_and_never_casts(
    tmp_path, leaf, like_dtype, stored
):
    tree = {"w": jnp.ones((2, 2), jnp.float32), "key": jax.random.key(0)}
    checkpoint.save(tmp_path, 0, tree)
    like = jax.eval_shape(lambda: tree)
    like[leaf] = jax.ShapeDtypeStruct(like[leaf].shape, like_dtype)
    with pytest.raises(CheckpointError) as info:
        checkpoint.restore(tmp_path, like)
    msg = str(info.value)
    assert f"['{leaf}']" in msg and stored in msg and np.dtype(like_dtype).name in msg


def test_restore_into_another_model_names_the_first_missing_path(tmp_path):
    checkpoint.save(tmp_path, 0, {"params": _params()})
    other = {"params": {"conv": {"w": np.zeros((3, 3, 1, 8), np.float32)}, **_params()}}
    with pytest.raises(
        CheckpointError, match=r"\['params'\]\['conv'\]\['w'\].*not in the checkpoint"
    ):
        checkpoint.restore(tmp_path, other)

    fewer = {"params": {"dense_0": _params()["dense_0"]}}
    with pytest.raises(CheckpointError, match=r"\['params'\]\['dense_1'\]\['b'\].*not in `like`"):
        checkpoint.restore(tmp_path, fewer)


def test_restore_of_optax_state_into_another_optimizer_raises(tmp_path):
    state = _train_state(optax.adam(1e-3))
    checkpoint.save(tmp_path, 2, state)
    like = jax.eval_shape(lambda: _train_state(optax.sgd(0.1, momentum=0.9)))
    with pytest.raises(CheckpointError, match=r"\['opt_state'\]\[0\]"):
        checkpoint.restore(tmp_path, like)


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _corrupt_step(tmp_path: Path) -> Path:
    checkpoint.save(tmp_path / "ckpt", 0, {"w": np.ones(3, np.float32)})
    return tmp_path / "ckpt" / "step_000000000"


def test_pickle_disguised_as_arrays_file_raises_and_runs_nothing(tmp_path):
    step_dir = _corrupt_step(tmp_path)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    (step_dir / "arrays.safetensors").write_bytes(payload)
    # A careful attacker also makes the manifest's size and checksum match the payload.
    import hashlib

    manifest = json.loads((step_dir / "manifest.json").read_text())
    manifest["arrays_bytes"] = len(payload)
    manifest["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
    (step_dir / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(CheckpointError, match=r"arrays\.safetensors"):
        checkpoint.restore(tmp_path / "ckpt", {"w": np.ones(3, np.float32)})
    assert not marker.exists()


def test_pickle_disguised_as_manifest_raises_and_runs_nothing(tmp_path):
    step_dir = _corrupt_step(tmp_path)
    marker = tmp_path / "pwned"
    (step_dir / "manifest.json").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        checkpoint.restore(tmp_path / "ckpt", {"w": np.ones(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        checkpoint.read_manifest(tmp_path / "ckpt")
    assert not marker.exists()


def test_manifest_naming_an_unknown_dtype_is_rejected(tmp_path):
    step_dir = _corrupt_step(tmp_path)
    manifest = json.loads((step_dir / "manifest.json").read_text())
    manifest["leaves"][0]["dtype"] = "object"
    (step_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unsupported dtype 'object'"):
        checkpoint.restore(tmp_path / "ckpt", {"w": np.ones(3, np.float32)})


@pytest.mark.parametrize("damage", ["truncate", "flip_data_bit", "flip_header_bit"])
def test_truncated_or_bit_flipped_arrays_file_raises_naming_the_file(tmp_path, damage):
    tree = {"w": np.arange(1000, dtype=np.float32)}
    path = checkpoint.save(tmp_path, 3, tree) / "arrays.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-100 if damage == "flip_data_bit" else 20] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step_000000003/arrays\.safetensors"):
        checkpoint.restore(tmp_path, tree)


def test_save_keeps_only_the_last_k_checkpoints(tmp_path):
    tree = {"w": np.zeros(2, np.float32)}
    for step in (10, 20, 30, 40, 50):
        checkpoint.save(tmp_path, step, tree, keep=3)
    assert checkpoint.all_steps(tmp_path) == [30, 40, 50]
    assert checkpoint.latest_step(tmp_path) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_000000030",
        "step_000000040",
        "step_000000050",
    ]
    checkpoint.save(tmp_path, 60, tree, keep=None)
    assert checkpoint.all_steps(tmp_path) == [30, 40, 50, 60]
    # A step below the newest k is still kept right after it was saved.
    checkpoint.save(tmp_path, 5, tree, keep=1)
    assert checkpoint.all_steps(tmp_path) == [5, 60]


def test_restore_of_a_given_step_and_missing_step(tmp_path):
    for step in (1, 2):
        checkpoint.save(tmp_path, step, {"w": np.full(2, step, np.int32)})
    restored, _ = checkpoint.restore(tmp_path, {"w": np.zeros(2, np.int32)}, step=1)
    np.testing.assert_array_equal(restored["w"], [1, 1])
    with pytest.raises(CheckpointError, match=r"step 7.*\[1, 2\]"):
        checkpoint.restore(tmp_path, {"w": np.zeros(2, np.int32)}, step=7)


@pytest.mark.parametrize(
    ("step", "keep", "match"),
    [
        (True, 3, r"step must be an int >= 0, got True of type bool"),
        (-1, 3, r"step must be >= 0, got -1"),
        (1.0, 3, r"step must be an int >= 0, got 1.0 of type float"),
        (1, 0, r"keep must be >= 1, got 0"),
        (1, True, r"keep must be None or an int >= 1, got True of type bool"),
    ],
)
def test_save_rejects_a_bad_step_or_keep_before_writing(tmp_path, step, keep, match):
    with pytest.raises(CheckpointError, match=match):
        checkpoint.save(tmp_path / "ckpt", step, {"w": np.zeros(2)}, keep=keep)
    assert not (tmp_path / "ckpt").exists()


def test_restore_rejects_a_bool_step_and_accepts_a_numpy_step(tmp_path):
    checkpoint.save(tmp_path, np.int64(1), {"w": np.ones(2, np.float32)})
    with pytest.raises(CheckpointError, match=r"step must be None or an int >= 0, got True"):
        checkpoint.restore(tmp_path, {"w": np.zeros(2, np.float32)}, step=True)
    restored, _ = checkpoint.restore(tmp_path, {"w": np.zeros(2, np.float32)}, step=np.int32(1))
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])


def test_no_checkpoint_gives_none_and_a_clear_error(tmp_path):
    assert checkpoint.latest_step(tmp_path / "absent") is None
    assert checkpoint.all_steps(tmp_path) == []
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*latest_step"):
        checkpoint.restore(tmp_path, {"w": np.zeros(2)})


@pytest.mark.parametrize(
    "tree, match",
    [
        ({"w": np.zeros(2, np.complex128)}, "complex128 is not supported"),
        ({"w": 1.5}, "float, not an array"),
        ({"w": np.array([{"a": 1}], dtype=object)}, "object is not supported"),
        ({"a/b": np.zeros(1), "a": {"b": np.zeros(1)}}, "both be stored as 'a/b'"),
    ],
    ids=["complex128", "python_float", "object_array", "name_clash"],
)
def test_save_rejects_unstorable_trees_and_writes_nothing(tmp_path, tree, match):
    with pytest.raises(CheckpointError, match=match):
        checkpoint.save(tmp_path, 0, tree)
    assert not (tmp_path / "step_000000000").exists()


def test_save_rejects_non_json_extra_and_existing_step(tmp_path):
    tree = {"w": np.zeros(2)}
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        checkpoint.save(tmp_path, 0, tree, extra={"loss": np.float32(1.0)})
    assert checkpoint.all_steps(tmp_path) == []
    checkpoint.save(tmp_path, 0, tree)
    with pytest.raises(CheckpointError, match=r"already exists.*overwrite=True"):
        checkpoint.save(tmp_path, 0, tree)
    checkpoint.save(tmp_path, 0, {"w": np.ones(2)}, overwrite=True)
    np.testing.assert_array_equal(checkpoint.restore(tmp_path, tree)[0]["w"], [1.0, 1.0])
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000000"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_half_written_tmp_dir_is_ignored_and_removed_by_the_next_save(tmp_path):
    checkpoint.save(tmp_path, 1, {"w": np.ones(2)})
    # What a save killed mid-write leaves: a temp dir with a partial arrays file.
    host = checkpoint._host_tag()
    stale = tmp_path / f".tmp-step_000000002-{host}-{_dead_pid()}-{'0' * 16}"
    stale.mkdir()
    (stale / "arrays.safetensors").write_bytes(b"\x10\x00\x00")
    live = tmp_path / f".tmp-step_000000002-{host}-{os.getppid()}-{'1' * 16}"
    live.mkdir()

    assert checkpoint.all_steps(tmp_path) == [1]
    restored, _ = checkpoint.restore(tmp_path, {"w": np.zeros(2)})
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])

    checkpoint.save(tmp_path, 3, {"w": np.zeros(2)})
    assert not stale.exists()
    assert live.exists()  # a concurrent save of a live process is left alone


def test_sigkill_during_saves_leaves_the_latest_checkpoint_restorable(tmp_path):
    n_floats, keep = 400_000, 2  # ~3.2 MB per checkpoint
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu"}
    rng = random.Random(1234)
    like = jax.eval_shape(lambda: expected_tree(0, n_floats))
    # Four writer processes, each forked by one helper process that imported fnet once.
    helper = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path), str(n_floats), str(keep)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    for _ in range(4):
        helper.stdin.write(b"go\n")
        helper.stdin.flush()
        ready = helper.stdout.readline()
        assert ready.startswith(b"ready "), helper.communicate()[1].decode()[-3000:]
        first = helper.stdout.readline()  # wait for one save, so that kills land in the loop
        assert first.startswith(b"saved "), helper.communicate()[1].decode()[-3000:]
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(int(ready.split()[1]), signal.SIGKILL)
        lines = [first]
        while not lines[-1].startswith(b"died "):
            lines.append(helper.stdout.readline())
            assert lines[-1], helper.communicate()[1].decode()[-3000:]  # helper alive
        assert lines.pop() == f"died {-signal.SIGKILL}\n".encode()
        reported = [int(line.split()[1]) for line in lines]

        latest = checkpoint.latest_step(tmp_path)
        assert latest is not None and latest >= reported[-1]  # returned saves are durable
        assert len(checkpoint.all_steps(tmp_path)) <= keep + 1  # killed before pruning
        restored, extra = checkpoint.restore(tmp_path, like)
        _assert_bit_identical(restored, expected_tree(latest, n_floats))
        assert extra == {"step": latest}
    helper.stdin.close()
    assert helper.wait(timeout=60) == 0
    # Whether a kill landed inside a save is up to timing; either way the next save
    # removes every temp dir the killed writers left.
    checkpoint.save(tmp_path, latest + 1, expected_tree(latest + 1, n_floats))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


_TOY_CONFIG = {"in": 3, "out": 2, "lr": 0.1}
_TOY_OPTIMIZER = optax.sgd(_TOY_CONFIG["lr"], momentum=0.9)


@jax.jit
def _toy_train_step(state: dict) -> tuple[dict, jax.Array]:
    """One SGD step of a linear model on fixed inputs plus key-dependent noise."""
    x = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)
    key, sub = jax.random.split(state["key"])
    noise = jax.random.normal(sub, x.shape, x.dtype) * 0.1

    def loss_fn(params):
        return jnp.mean(jnp.square((x + noise) @ params["w"] + params["b"][None, :] - 1.0))

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt_state = _TOY_OPTIMIZER.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state, "key": key}, loss


def _train(ckpt_dir: Path | None, n_steps: int, *, stop_after: int | None = None) -> dict:
    """A tiny training loop in the shape fnet.train will use: state = params, opt_state, key;
    extra = history + config; save every 2 steps; resume from the latest checkpoint."""
    params = {"w": jnp.full((3, 2), 0.5, jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    state = {"params": params, "opt_state": _TOY_OPTIMIZER.init(params), "key": jax.random.key(3)}
    step, history = 0, []
    if ckpt_dir is not None and (last := checkpoint.latest_step(ckpt_dir)) is not None:
        state, extra = checkpoint.restore(ckpt_dir, jax.eval_shape(lambda: state), step=last)
        assert extra["config"] == _TOY_CONFIG
        step, history = last, extra["history"]
    while step < n_steps:
        state, loss = _toy_train_step(state)
        step += 1
        history.append(float(loss))
        if ckpt_dir is not None and step % 2 == 0:
            extra = {"history": history, "config": _TOY_CONFIG}
            checkpoint.save(ckpt_dir, step, state, extra=extra)
        if step == stop_after:
            break
    return {"state": state, "history": history}


def test_interrupted_and_resumed_loop_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    reference = _train(None, 6)
    _train(tmp_path, 6, stop_after=3)  # "killed" after step 3; the last checkpoint is step 2
    assert checkpoint.latest_step(tmp_path) == 2
    resumed = _train(tmp_path, 6)
    _assert_bit_identical(resumed["state"], reference["state"])
    assert resumed["history"] == reference["history"]
