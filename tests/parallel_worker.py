"""Data-parallel checks on 8 forced CPU devices, run by ``tests/test_parallel.py``.

``python tests/parallel_worker.py OUT.json`` sets ``XLA_FLAGS`` before importing JAX
(the device count is fixed when JAX starts), runs every check in this one process (JAX
start-up costs seconds) and writes the measurements as JSON; the tests assert on them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import optax  # noqa: E402

import fnet  # noqa: E402
from fnet import distributed, per_example  # noqa: E402
from fnet.losses import softmax_cross_entropy  # noqa: E402
from fnet.train import TrainState, fit, supervised  # noqa: E402
from fnet.train.step import make_step  # noqa: E402

COUNTS = (1, 2, 4, 8)
COMPILES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, _secs, **_kw: (
        COMPILES.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
    )
)


def _max_rel(a, b) -> float:
    """``max |a - b| / max |b|`` over all leaves of two trees of the same structure.

    Relative to the largest entry of ``b``: a leaf that is zero up to rounding (a Dense
    bias before BatchNorm gets no gradient) does not turn rounding into a large ratio.
    """
    pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    diff = max(float(np.max(np.abs(np.asarray(u, np.float64) - v))) for u, v in pairs)
    scale = max(float(np.max(np.abs(np.asarray(v, np.float64)))) for _, v in pairs)
    return diff / max(scale, 1e-30)


def _specs(tree) -> list[str]:
    return sorted({str(leaf.sharding.spec) for leaf in jax.tree.leaves(tree)})


def _data(n: int, d: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def check_fit(out: dict) -> None:
    """fit on 1, 2, 4, 8 devices vs no mesh; dropout and a tail batch (100 % 16 = 4)."""
    model = fnet.models.mlp([32], 3, dropout=0.1)
    _, params = model.init(jax.random.key(0), (-1, 5))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.adam(1e-2)
    x, y = _data(100, 5, 3)
    kw = dict(key=jax.random.key(1), epochs=2, batch_size=16, progress=False)
    before = len(COMPILES)
    ref = fit(obj, params, opt, x, y, **kw)
    out["fit_compiles_no_mesh"] = len(COMPILES) - before
    out["fit"] = {}
    for k in COUNTS:
        # 8 devices: a mesh from jax.make_mesh with its default Explicit axes works too.
        mesh = jax.make_mesh((8,), ("data",)) if k == 8 else distributed.data_mesh(k)
        before = len(COMPILES)
        res = fit(obj, params, opt, x, y, mesh=mesh, **kw)
        out["fit"][str(k)] = {
            "params_rel": _max_rel(res.params, ref.params),
            "opt_state_rel": _max_rel(res.opt_state, ref.opt_state),
            "loss_rel": _max_rel(res.history["train_loss"], ref.history["train_loss"]),
            "param_specs": _specs(res.params),
            "opt_state_specs": _specs(res.opt_state),
            "n_devices": len(jax.tree.leaves(res.params)[0].sharding.device_set),
            "compiles": len(COMPILES) - before,
        }
    # Interrupted after 1 epoch and resumed on the same mesh: bit-identical.
    with tempfile.TemporaryDirectory() as d:
        fit(obj, params, opt, x, y, mesh=mesh, checkpoint_dir=d, **{**kw, "epochs": 1})
        again = fit(obj, params, opt, x, y, mesh=mesh, checkpoint_dir=d, **kw)
    # Saved on 8 devices, resumed on 2 (checkpoints hold plain arrays): the same run up
    # to float rounding.
    with tempfile.TemporaryDirectory() as d:
        fit(obj, params, opt, x, y, mesh=mesh, checkpoint_dir=d, **{**kw, "epochs": 1})
        moved = fit(obj, params, opt, x, y, mesh=distributed.data_mesh(2), checkpoint_dir=d, **kw)
    out["resume_on_other_mesh_rel"] = _max_rel(moved.params, ref.params)
    out["resume_on_mesh_identical"] = all(
        np.array_equal(u, v)
        for u, v in zip(jax.tree.leaves(again[:3]), jax.tree.leaves(res[:3]), strict=True)
    )
    out["resume_on_mesh_param_specs"] = _specs(again.params)
    try:
        fit(obj, params, opt, x, y, mesh=distributed.data_mesh(8), **{**kw, "batch_size": 12})
        out["indivisible_error"] = None
    except ValueError as e:
        out["indivisible_error"] = str(e)


def check_batchnorm(out: dict) -> None:
    """A stateful model: batch statistics over the global batch, as on one device."""
    model = fnet.serial(fnet.Dense(16), fnet.BatchNorm(), fnet.Relu(), fnet.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 5))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1, momentum=0.9)
    x, y = _data(64, 5, 3, seed=1)
    kw = dict(key=jax.random.key(2), epochs=1, batch_size=32, state=state, progress=False)
    ref = fit(obj, params, opt, x, y, **kw)
    res = fit(obj, params, opt, x, y, mesh=distributed.data_mesh(8), **kw)
    out["batchnorm_rel"] = max(_max_rel(res.params, ref.params), _max_rel(res.state, ref.state))


def check_model_axis(out: dict) -> None:
    """A (4, 2) data x model mesh: the 128x128 matrix is split over "model"."""
    model = fnet.models.mlp([128], 3)
    _, params = model.init(jax.random.key(0), (-1, 128))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1, momentum=0.9)
    x, y = _data(64, 128, 3, seed=2)
    kw = dict(key=jax.random.key(3), epochs=1, batch_size=32, progress=False)
    ref = fit(obj, params, opt, x, y, **kw)
    res = fit(obj, params, opt, x, y, mesh=distributed.data_mesh(8, model=2), **kw)
    out["model_axis"] = {
        "params_rel": _max_rel(res.params, ref.params),
        "w0_spec": str(res.params["dense_0"]["w"].sharding.spec),
        "w1_spec": str(res.params["dense_1"]["w"].sharding.spec),
        "trace0_spec": str(res.opt_state[0].trace["dense_0"]["w"].sharding.spec),
    }


def check_train_step_and_global_batch(out: dict) -> None:
    """distributed.train_step on global batches == the plain step on the same batches."""
    model = fnet.models.mlp([16], 3)
    _, params = model.init(jax.random.key(0), (-1, 4))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1)
    x, y = _data(32, 4, 3, seed=3)
    mesh = distributed.data_mesh(8)
    ts_ref = TrainState.create(params, opt)
    ts = distributed.place(TrainState.create(params, opt), mesh)
    step = distributed.train_step(obj, opt, mesh, ts)
    plain = jax.jit(make_step(obj, opt))
    for i in range(3):
        key = jax.random.key(i)
        xb, yb = x[8 * i : 8 * i + 16], y[8 * i : 8 * i + 16]
        ts_ref, _ = plain(ts_ref, xb, yb, key)
        local = distributed.host_shard((xb, yb))  # one process: all rows
        gx, gy = distributed.global_batch(local, mesh)
        ts, _ = step(ts, gx, gy, key)
    out["train_step"] = {
        "params_rel": _max_rel(ts.params, ts_ref.params),
        "batch_spec": str(gx.sharding.spec),
        "batch_shards": len(gx.addressable_shards),
        "param_specs": _specs(ts.params),
    }
    out["host_shard"] = [
        np.asarray(distributed.host_shard(np.arange(8), i, 4)).tolist() for i in range(4)
    ]


def check_per_example(out: dict) -> None:
    """per-example stats (dense trick, B_noise) and norms (vmap) on 8 devices == unsharded."""
    model = fnet.models.mlp([16], 3, "tanh")
    _, params = model.init(jax.random.key(0), (-1, 6))
    loss = per_example.model_loss(model, softmax_cross_entropy)
    x, y = _data(64, 6, 3, seed=4)
    mesh = distributed.data_mesh(8)
    fields = ("grad", "grad_sq_norm", "mean_sq_norm", "trace_cov", "b_simple", "sq_norms")
    kw = dict(method="dense", chunk_size=16, hessian_examples=8, hessian_batch=16)
    kw["hessian_key"] = jax.random.key(5)
    ref = per_example.stats(loss, params, x, y, **kw)
    got = distributed.per_example_stats(loss, params, x, y, mesh, **kw)
    kw = dict(method="vmap", chunk_size=16)
    out["per_example"] = {
        "stats_rel": max(_max_rel(getattr(got, f), getattr(ref, f)) for f in fields),
        "b_noise_rel": _max_rel(got.b_noise, ref.b_noise),
        "method": got.method,
        "norms_rel": _max_rel(
            distributed.per_example_norms(loss, params, x, y, mesh, **kw),
            per_example.norms(loss, params, x, y, **kw),
        ),
        "norms_shards": len(
            distributed.per_example_norms(loss, params, x, y, mesh, **kw).sharding.device_set
        ),
    }


def main() -> None:
    out: dict = {"device_count": jax.device_count()}
    timings = {}
    for check in (
        check_fit,
        check_batchnorm,
        check_model_axis,
        check_train_step_and_global_batch,
        check_per_example,
    ):
        t = time.perf_counter()
        check(out)
        timings[check.__name__] = round(time.perf_counter() - t, 2)
    out["timings"] = timings
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
