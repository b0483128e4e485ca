"""One process of a 2-process CPU "multi-host" job, run by ``tests/test_parallel.py``.

``python tests/parallel_multihost.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR``: every process
gets 2 forced CPU devices, joins the job with ``fnet.distributed.initialize`` (a
coordinator on localhost), loads only its own rows (``host_shard``), assembles global
batches (``global_batch``), trains with ``train_step(..., mesh=)`` and with
``fit(mesh=..., checkpoint_dir=...)``, and compares with the same training on its own
first device alone. Process 0 writes ``OUT_DIR/result.json``.
"""

from __future__ import annotations

import json
import os
import sys

# LLVM at -O0 compiles faster; both sides of every comparison use the same flags.
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=2"
    " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import optax  # noqa: E402

import fnet  # noqa: E402
from fnet import checkpoint, distributed  # noqa: E402
from fnet.losses import softmax_cross_entropy  # noqa: E402
from fnet.train import TrainState, fit, supervised, train_step  # noqa: E402
from fnet.train.step import make_step  # noqa: E402


def _local(tree):
    """Host copies of replicated global arrays (this process's first shard)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def _max_rel(a, b) -> float:
    pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    pairs = [(np.asarray(u, np.float64), np.asarray(v, np.float64)) for u, v in pairs]
    diff = max(float(np.max(np.abs(u - v))) for u, v in pairs)
    scale = max(float(np.max(np.abs(v))) for _, v in pairs)
    return diff / scale


def main() -> None:
    pid, nproc, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    distributed.initialize(f"localhost:{port}", nproc, pid)
    mesh = distributed.data_mesh()  # every device of every process
    result: dict = {
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
    }

    model = fnet.models.mlp([16], 3)
    _, params = model.init(jax.random.key(0), (-1, 4))
    obj = supervised(model, softmax_cross_entropy)
    opt = optax.sgd(0.1)
    rng = np.random.default_rng(0)  # every process could read the whole set; each keeps its rows
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.int32)

    # 1. A loop of global batches: each process loads its half of every batch.
    ts = distributed.place(TrainState.create(params, opt), mesh)
    step = train_step(obj, opt, mesh=mesh, donate=True)
    ref_ts, plain = TrainState.create(params, opt), jax.jit(make_step(obj, opt))
    for i in range(2):
        xb, yb = x[16 * i : 16 * i + 16], y[16 * i : 16 * i + 16]
        gx, gy = distributed.global_batch(distributed.host_shard((xb, yb)), mesh)
        ts, _ = step(ts, gx, gy, distributed.replicate(jax.random.key(i), mesh))
        ref_ts, _ = plain(ref_ts, xb, yb, jax.random.key(i))
    result["train_step_rel"] = _max_rel(_local(ts.params), jax.device_get(ref_ts.params))
    result["global_batch_shape"] = list(gx.shape)
    result["global_batch_local_rows"] = sum(s.data.shape[0] for s in gx.addressable_shards)

    # 2. fit on the global dataset (each process holds its rows), with checkpoints.
    gx, gy = distributed.global_batch(distributed.host_shard((x, y)), mesh)
    kw = dict(key=jax.random.key(1), batch_size=16, progress=False)
    ref = fit(obj, params, opt, x, y, epochs=2, **kw)  # this process, one device
    ckpt = os.path.join(out_dir, "ckpt")
    fit(obj, params, opt, gx, gy, epochs=1, mesh=mesh, checkpoint_dir=ckpt, **kw)
    res = fit(obj, params, opt, gx, gy, epochs=2, mesh=mesh, checkpoint_dir=ckpt, **kw)
    result["fit_rel"] = _max_rel(_local(res.params), jax.device_get(ref.params))
    result["fit_loss_rel"] = _max_rel(res.history["train_loss"], ref.history["train_loss"])
    result["checkpoints"] = checkpoint.all_steps(ckpt)
    result["fit_param_devices"] = len(jax.tree.leaves(res.params)[0].sharding.device_set)
    if pid == 0:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
