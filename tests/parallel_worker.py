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

# 8 forced CPU devices; LLVM at -O0 compiles ~30 % faster (every comparison below is between
# programs compiled with the same flags; sharding is decided at the HLO level, before LLVM).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import optax  # noqa: E402

import fnet  # noqa: E402
from fnet import distributed, per_example  # noqa: E402
from fnet.losses import softmax_cross_entropy  # noqa: E402
from fnet.train import TrainState, fit, supervised, train_step  # noqa: E402
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
    Computed on the host (NumPy), so comparing compiles nothing.
    """
    pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    pairs = [(np.asarray(u, np.float64), np.asarray(v, np.float64)) for u, v in pairs]
    diff = max(float(np.max(np.abs(u - v))) for u, v in pairs)
    scale = max(float(np.max(np.abs(v))) for _, v in pairs)
    return diff / max(scale, 1e-30)


def _specs(tree) -> list[str]:
    return sorted({str(leaf.sharding.spec) for leaf in jax.tree.leaves(tree)})


def _data(n: int, d: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def check_fit(out: dict) -> None:
    """fit with no mesh vs 1, 2, 4, 8 devices and a (4, 2) data x model mesh.

    One model covers what needed a model of its own: BatchNorm (its batch statistics must
    cover the global batch, else params and state differ from one device) and a (128, 128)
    matrix (split over "model" on the (4, 2) mesh). Every fit shares one objective and
    optimizer, so each mesh compiles its epoch once and resumed fits compile nothing.
    Dropout and a tail batch make the epoch program twice as slow to compile:
    :func:`check_dropout_and_tail` covers them on 8 devices only.
    """
    model = fnet.serial(fnet.Dense(128), fnet.BatchNorm(), fnet.Relu(), fnet.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 128))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1, momentum=0.9)
    x, y = _data(64, 128, 3)
    kw = dict(key=jax.random.key(1), epochs=2, batch_size=16, state=state, progress=False)
    before = len(COMPILES)
    ref = fit(obj, params, opt, x, y, **kw)
    out["fit_compiles_no_mesh"] = len(COMPILES) - before
    meshes = {str(k): distributed.data_mesh(k) for k in (1, 2, 4)}
    # 8 devices: a mesh from jax.make_mesh with its default Explicit axes works too.
    meshes["8"] = jax.make_mesh((8,), ("data",))
    meshes["4x2"] = distributed.data_mesh(8, model=2)
    out["fit"] = {}
    for name, mesh in meshes.items():
        before = len(COMPILES)
        res = fit(obj, params, opt, x, y, mesh=mesh, **kw)
        out["fit"][name] = {
            "params_rel": _max_rel(res.params, ref.params),
            "state_rel": _max_rel(res.state, ref.state),
            "opt_state_rel": _max_rel(res.opt_state, ref.opt_state),
            "loss_rel": _max_rel(res.history["train_loss"], ref.history["train_loss"]),
            "param_specs": _specs(res.params),
            "opt_state_specs": _specs(res.opt_state),
            "n_devices": len(jax.tree.leaves(res.params)[0].sharding.device_set),
            "compiles": len(COMPILES) - before,
        }
        if name == "8":
            res8 = res
    out["model_axis"] = {
        "w0_spec": str(res.params["dense_0"]["w"].sharding.spec),
        "w1_spec": str(res.params["dense_1"]["w"].sharding.spec),
        "trace0_spec": str(res.opt_state[0].trace["dense_0"]["w"].sharding.spec),
    }
    # Interrupted after 1 epoch and resumed on the same mesh: bit-identical.
    mesh8 = meshes["8"]
    with tempfile.TemporaryDirectory() as d:
        fit(obj, params, opt, x, y, mesh=mesh8, checkpoint_dir=d, **{**kw, "epochs": 1})
        again = fit(obj, params, opt, x, y, mesh=mesh8, checkpoint_dir=d, **kw)
    # Saved on 8 devices, resumed on 2 (checkpoints hold plain arrays): the same run up
    # to float rounding.
    with tempfile.TemporaryDirectory() as d:
        fit(obj, params, opt, x, y, mesh=mesh8, checkpoint_dir=d, **{**kw, "epochs": 1})
        moved = fit(obj, params, opt, x, y, mesh=meshes["2"], checkpoint_dir=d, **kw)
    out["resume_on_other_mesh_rel"] = _max_rel(moved.params, ref.params)
    out["resume_on_mesh_identical"] = all(
        np.array_equal(u, v)
        for u, v in zip(jax.tree.leaves(again[:3]), jax.tree.leaves(res8[:3]), strict=True)
    )
    out["resume_on_mesh_param_specs"] = _specs(again.params)
    try:
        fit(obj, params, opt, x, y, mesh=mesh8, **{**kw, "batch_size": 12})
        out["indivisible_error"] = None
    except ValueError as e:
        out["indivisible_error"] = str(e)


def check_dropout_and_tail(out: dict) -> None:
    """Dropout (per-step keys) and a tail batch of 4 rows (68 % 16) on 8 devices."""
    model = fnet.models.mlp([16], 3, dropout=0.2)
    _, params = model.init(jax.random.key(0), (-1, 5))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1)
    x, y = _data(68, 5, 3, seed=1)
    kw = dict(key=jax.random.key(2), epochs=2, batch_size=16, progress=False)
    ref = fit(obj, params, opt, x, y, **kw)
    res = fit(obj, params, opt, x, y, mesh=distributed.data_mesh(8), **kw)
    out["dropout_tail"] = {
        "params_rel": _max_rel(res.params, ref.params),
        "loss_rel": _max_rel(res.history["train_loss"], ref.history["train_loss"]),
        "steps": res.history["steps"],
    }


def check_train_step_and_global_batch(out: dict) -> None:
    """train_step(mesh=) on global batches == the plain step on the same batches."""
    model = fnet.models.mlp([16], 3)
    _, params = model.init(jax.random.key(0), (-1, 4))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1)
    x, y = _data(32, 4, 3, seed=3)
    mesh = distributed.data_mesh(8)
    ts_ref = TrainState.create(params, opt)
    ts = distributed.place(TrainState.create(params, opt), mesh)
    step = train_step(obj, opt, mesh=mesh, donate=True)
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
    """per-example stats (dense trick, B_noise) and norms (vmap) on 8 devices == unsharded.

    The sharded vmap norms are compared with the unsharded dense-trick ``sq_norms``: one
    reference checks both methods' sharded paths.
    """
    model = fnet.models.mlp([16], 3, "tanh")
    _, params = model.init(jax.random.key(0), (-1, 6))
    loss = per_example.model_loss(model, softmax_cross_entropy)
    x, y = _data(64, 6, 3, seed=4)
    mesh = distributed.data_mesh(8)
    fields = ("grad", "grad_sq_norm", "mean_sq_norm", "trace_cov", "b_simple", "sq_norms")
    kw = dict(method="dense", chunk_size=16, hessian_examples=8, hessian_batch=16)
    kw["hessian_key"] = jax.random.key(5)
    ref = per_example.stats(loss, params, x, y, **kw)
    got = per_example.stats(loss, params, x, y, mesh=mesh, **kw)
    norms = per_example.norms(loss, params, x, y, mesh=mesh, method="vmap", chunk_size=16)
    out["per_example"] = {
        "stats_rel": max(_max_rel(getattr(got, f), getattr(ref, f)) for f in fields),
        "b_noise_rel": _max_rel(got.b_noise, ref.b_noise),
        "method": got.method,
        "norms_rel": _max_rel(np.asarray(norms) ** 2, ref.sq_norms),
        "norms_shards": len(norms.sharding.device_set),
    }


def main() -> None:
    out: dict = {"device_count": jax.device_count()}
    timings = {}
    for check in (
        check_fit,
        check_dropout_and_tail,
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
