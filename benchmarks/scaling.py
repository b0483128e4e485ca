"""Data-parallel scaling of ``fnet.train.fit(mesh=...)`` on 1, 2, 4, 8 devices.

``python -m benchmarks.scaling [--quick]``. Each device count runs in its own Python (the
number of forced host devices is fixed when JAX starts): on a CPU machine
``XLA_FLAGS=--xla_force_host_platform_device_count=k``, on a machine with ``k`` or more
GPUs/TPUs the first ``k`` real devices. The same MLP trains on the same data with the same
GLOBAL batch (strong scaling); the rows give samples/s, the speedup over one device
without a mesh, and the efficiency ``speedup / devices``.

Forced host devices share the machine's cores: with fewer cores than devices they cannot
speed anything up, and the numbers measure the overhead of the sharded program (the
per-step gradient all-reduce, gather and resharding between host "devices"), not a gain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

__all__ = ["run"]

COUNTS = (1, 2, 4, 8)
SIZES = (784, 512, 512, 10)  # an MNIST-sized MLP


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _worker(devices: int, use_mesh: bool, n: int, batch: int, epochs: int) -> dict[str, Any]:
    """Train in this process (JAX already started with ``devices`` devices) and time it."""
    import jax
    import numpy as np
    import optax

    import fnet
    from fnet import distributed
    from fnet.train import fit, supervised

    model = fnet.models.mlp(list(SIZES[1:-1]), SIZES[-1], "relu")
    _, params = model.init(jax.random.key(0), (-1, SIZES[0]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], n).astype(np.int32)
    obj = supervised(model, fnet.losses.softmax_cross_entropy)
    mesh = distributed.data_mesh(devices) if use_mesh else None
    res = fit(obj, params, optax.sgd(0.05, momentum=0.9), x, y, key=jax.random.key(1),
              epochs=epochs, batch_size=batch, mesh=mesh, progress=False)  # fmt: skip
    times = res.history["epoch_time"]
    return {
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "epoch_s": statistics.median(times),
        "epoch_times": times,
        "compile_s": res.history["compile_time"],
    }


def _spawn(devices: int, use_mesh: bool, n: int, batch: int, epochs: int, forced: bool):
    env = dict(os.environ)
    if forced:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
        flags.append(f"--xla_force_host_platform_device_count={devices}")
        env["XLA_FLAGS"] = " ".join(flags)
        env["JAX_PLATFORMS"] = "cpu"
    args = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(devices),
            "--n", str(n), "--batch", str(batch), "--epochs", str(epochs)]  # fmt: skip
    if not use_mesh:
        args.append("--no-mesh")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"scaling worker ({devices} devices) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _accelerators() -> int:
    """How many GPUs/TPUs this machine has (0 on a CPU-only machine), asked in a subprocess
    so that this process's JAX is not started with the wrong device count."""
    code = "import jax; print(sum(d.platform != 'cpu' for d in jax.devices()))"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        return int(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return 0


def run(quick: bool) -> list[dict]:
    """Rows of the scaling table: one per (global batch, device count)."""
    n = 16_384 if quick else 65_536
    batches = (512,) if quick else (256, 2048)
    epochs = 3 if quick else 5
    rounds = 1 if quick else 3
    accel = _accelerators()
    forced = accel == 0
    counts = [k for k in COUNTS if forced or k <= accel]
    rows = []
    for batch in batches:
        cases = [(1, False)] + [(k, True) for k in counts]
        results: dict[tuple[int, bool], list[dict]] = {c: [] for c in cases}
        for _ in range(rounds):  # rounds interleave the cases on a noisy machine
            for k, use_mesh in cases:
                results[(k, use_mesh)].append(_spawn(k, use_mesh, n, batch, epochs, forced))
        base = statistics.median(r["epoch_s"] for r in results[(1, False)])
        for (k, use_mesh), rs in results.items():
            epoch_s = statistics.median(r["epoch_s"] for r in rs)
            speedup = base / epoch_s
            kind = "forced host CPU devices" if forced else rs[0]["device_kind"]
            rows.append(
                {
                    "global_batch": batch,
                    "devices": k,
                    "mesh": "yes" if use_mesh else "no (plain fit)",
                    "per_device_batch": batch // k,
                    "samples_per_s": n / epoch_s,
                    "epoch_s": epoch_s,
                    "speedup": speedup,
                    "efficiency": speedup / k,
                    "compile_s": statistics.median(r["compile_s"] for r in rs),
                    "note": f"{kind}, {_cores()} cores" if forced else kind,
                }
            )
    return rows


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16k examples, one round")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-mesh", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=16_384, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        out = _worker(args.worker, not args.no_mesh, args.n, args.batch, args.epochs)
        print(json.dumps(out))
        return
    from benchmarks.harness import markdown_table

    print(f"fit(mesh=...) strong scaling, {_cores()} CPU cores")
    print(markdown_table(run(args.quick)))


if __name__ == "__main__":
    _main()
