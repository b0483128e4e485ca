"""Tests of data parallelism: ``fnet.distributed`` and ``fit(..., mesh=...)``.

The multi-device checks run once, in a subprocess with 8 forced CPU devices
(``tests/parallel_worker.py``; the device count is fixed when JAX starts), and each test
below asserts on one of its measurements. The in-process tests need one device only.

A 2-process job on localhost (``tests/parallel_multihost.py``) exercises the multi-host
path. Starting two more JAX processes costs ~10 s of CPU, more than the suite's budget,
so those tests carry the ``multihost`` marker, deselected by default; run them with
``python -m pytest -m multihost tests/test_parallel.py`` (see ``docs/parallel.md``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from fnet import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTS = ("1", "2", "4", "8")
RTOL = 1e-6  # float32 sums in another order, relative to the largest entry


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("parallel") / "out.json"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "parallel_worker.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


# ------------------------------------------------------------------ 8 forced devices


def test_worker_sees_eight_devices(worker):
    assert worker["device_count"] == 8


def test_fit_on_1_2_4_8_devices_gives_the_params_of_one_device(worker):
    assert worker["fit"]["1"]["params_rel"] == 0.0  # one device: the very same program
    for k in COUNTS:
        r = worker["fit"][k]
        assert r["params_rel"] < RTOL and r["opt_state_rel"] < RTOL, (k, r)
        assert r["loss_rel"] < RTOL, (k, r)


def test_fit_keeps_params_and_opt_state_replicated_on_every_device(worker):
    for k in COUNTS:
        r = worker["fit"][k]
        assert r["param_specs"] == ["P()"] and r["opt_state_specs"] == ["P()"]
        assert r["n_devices"] == int(k)


def test_fit_on_a_mesh_compiles_one_computation_for_all_epochs(worker):
    for k in ("2", "4", "8"):
        assert worker["fit"][k]["compiles"] == 1, worker["fit"][k]


def test_batch_size_not_divisible_by_devices_raises_clear_error(worker):
    msg = worker["indivisible_error"]
    assert msg is not None
    assert "batch_size=12" in msg and "8 devices" in msg and "multiple of 8" in msg


def test_batchnorm_statistics_cover_the_global_batch(worker):
    # The fit model has a BatchNorm: per-device statistics would change params and state.
    for k in (*COUNTS, "4x2"):
        assert worker["fit"][k]["state_rel"] < RTOL, (k, worker["fit"][k])


def test_dropout_and_a_tail_batch_on_8_devices_match_one_device(worker):
    r = worker["dropout_tail"]
    assert r["steps"] == [5, 10]  # 68 = 4 * 16 + a tail of 4 rows, fewer than 8 devices
    assert r["params_rel"] < RTOL and r["loss_rel"] < RTOL, r


def test_model_axis_splits_large_matrices_and_matches_one_device(worker):
    r = worker["model_axis"]  # the (4, 2) data x model mesh
    assert r["w0_spec"] == "P(None, 'model')"  # (128, 128): split by output units
    assert r["trace0_spec"] == "P(None, 'model')"  # momentum mirrors its param
    assert r["w1_spec"] == "P()"  # (128, 3): small and 3 % 2 != 0, replicated
    f = worker["fit"]["4x2"]
    assert f["n_devices"] == 8
    assert f["params_rel"] < RTOL and f["opt_state_rel"] < RTOL and f["loss_rel"] < RTOL, f


def test_train_step_on_global_batches_matches_the_plain_step(worker):
    r = worker["train_step"]
    assert r["params_rel"] < RTOL
    assert r["batch_spec"] == "P('data',)" and r["batch_shards"] == 8
    assert r["param_specs"] == ["P()"]


def test_sharded_per_example_stats_and_norms_match_unsharded(worker):
    r = worker["per_example"]
    assert r["method"] == "dense"
    assert r["stats_rel"] < RTOL and r["b_noise_rel"] < 1e-5 and r["norms_rel"] < RTOL
    assert r["norms_shards"] == 8


def test_fit_resumed_on_a_mesh_is_bit_identical(worker):
    assert worker["resume_on_mesh_identical"] is True
    assert worker["resume_on_mesh_param_specs"] == ["P()"]


def test_fit_saved_on_8_devices_resumes_on_2(worker):
    assert worker["resume_on_other_mesh_rel"] < RTOL


# ------------------------------------------------------------------ one device, in process


def test_data_mesh_names_axes_and_checks_sizes():
    mesh = distributed.data_mesh()
    assert mesh.axis_names == ("data",) and distributed.data_size(mesh) == jax.device_count()
    assert distributed.model_axis(mesh) is None
    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"data_mesh: n_devices must be in \[1, {n}\]"):
        distributed.data_mesh(n + 1)
    with pytest.raises(TypeError, match=r"data_mesh: n_devices must be an int .*True"):
        distributed.data_mesh(True)
    with pytest.raises(ValueError, match="data_mesh: model=2 must divide n_devices=1"):
        distributed.data_mesh(1, model=2)
    with pytest.raises(TypeError, match=r"data_mesh: model must be an int >= 1, got 1\.0"):
        distributed.data_mesh(1, model=1.0)


def test_as_auto_converts_explicit_axes():
    mesh = jax.make_mesh((1,), ("data",), (jax.sharding.AxisType.Explicit,))
    auto = distributed.as_auto(mesh)
    assert auto.axis_types == (jax.sharding.AxisType.Auto,)
    assert distributed.as_auto(auto) is auto


def test_check_divisible_names_both_numbers_and_a_fix():
    mesh = distributed.data_mesh(1)
    distributed.check_divisible(7, mesh)  # one device: everything divides
    fake = jax.sharding.Mesh(np.array(jax.devices()[:1] * 4).reshape(4), ("data",))
    with pytest.raises(ValueError, match=r"batch_size=10 .* 4 devices .* \(e\.g\. 8 or 12\)"):
        distributed.check_divisible(10, fake)


def test_host_shard_gives_each_process_its_contiguous_rows(worker):
    assert worker["host_shard"] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    x = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(distributed.host_shard(x, 1, 3), x[2:4])
    np.testing.assert_array_equal(distributed.host_shard(x), x)  # one process: all
    with pytest.raises(ValueError, match="not divisible by 4 processes"):
        distributed.host_shard(x, 0, 4)


def test_param_shardings_replicate_everything_without_a_model_axis():
    tree = {"w": np.zeros((256, 256), np.float32), "b": np.zeros((256,), np.float32)}
    specs = jax.tree.map(
        lambda s: s.spec, distributed.param_shardings(tree, distributed.data_mesh())
    )
    assert specs == {"w": jax.sharding.PartitionSpec(), "b": jax.sharding.PartitionSpec()}


def test_initialize_is_a_no_op_on_one_process():
    distributed.initialize()  # no cluster detected: nothing happens
    distributed.initialize(num_processes=1)
    assert jax.process_count() == 1


# ------------------------------------------------------------------ two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def multihost(tmp_path_factory) -> dict:
    """A 2-process job (2 CPU devices each) joined through jax.distributed on localhost."""
    out = tmp_path_factory.mktemp("multihost")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    script, port = os.path.join(HERE, "parallel_multihost.py"), str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(i), "2", port, str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode:
            errors.append(err[-3000:])
    assert not errors, "\n".join(errors)
    return json.loads((out / "result.json").read_text())


@pytest.mark.multihost
def test_two_processes_join_one_job_with_all_devices(multihost):
    assert multihost["process_count"] == 2
    assert multihost["global_devices"] == 4 and multihost["local_devices"] == 2


@pytest.mark.multihost
def test_global_batch_from_per_host_rows_trains_like_one_device(multihost):
    assert multihost["global_batch_shape"] == [16, 4]
    assert multihost["global_batch_local_rows"] == 8  # each host holds only its half
    assert multihost["train_step_rel"] < RTOL


@pytest.mark.multihost
def test_fit_across_processes_matches_one_device_and_checkpoints(multihost):
    assert multihost["fit_rel"] < RTOL and multihost["fit_loss_rel"] < RTOL
    assert multihost["fit_param_devices"] == 4
    assert multihost["checkpoints"] == [1, 2]  # 1 epoch, then resumed to 2
