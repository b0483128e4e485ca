"""Training throughput (samples/s) of one SGD epoch, fnet against every peer, in one run.

Workloads: MLP 784-200-tanh-10 and Linear 784-10 on 60,000 MNIST-shaped examples, SGD
lr 0.1, batch 100 and 1000. Peers: hand-written NumPy, a ``jax.jit`` step in a Python
loop, the epoch fused by ``lax.scan``, PyTorch eager (2 threads), Flax linen, Equinox,
Haiku (skipped with a note when not installed). Every case of one workload is timed
round-robin (see :mod:`benchmarks.harness`); ratios are within that workload. Achieved
GFLOP/s uses exact matmul FLOPs (:attr:`DenseSpec.train_flops`) and is compared with the
measured 2048^3 float32 GEMM rate of the same run.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.baselines import matmul_peak, numpy_epoch
from benchmarks.harness import optional_import, ratio, time_interleaved
from benchmarks.peers import FACTORIES, OPTIONAL, fnet_fit_epoch
from benchmarks.workloads import MODELS, mnist_like

__all__ = ["run"]

LR = 0.1
REFERENCE = "PyTorch eager"
SCAN = "jax.lax.scan epoch"


def _cases(spec, x, y, batch: int, epoch_times: list[float]) -> tuple[dict, dict[str, str]]:
    cases: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name, factory in FACTORIES.items():
        if name in OPTIONAL:
            module, note = optional_import(OPTIONAL[name])
            if module is None:
                notes[name] = note or "skipped"
                continue
        if factory is fnet_fit_epoch:
            cases[name] = fnet_fit_epoch(spec, x, y, batch, LR, epoch_times)
        else:
            cases[name] = factory(spec, x, y, batch, LR)
    cases["NumPy (hand-written)"] = numpy_epoch(spec, x, y, batch, LR)
    return cases, notes


def run(quick: bool) -> list[dict]:
    """Rows: one per (workload, framework), plus the matmul roof rows."""
    n = 1_000 if quick else 60_000
    repeats = 1 if quick else 5
    batches = (100,) if quick else (100, 1000)
    models = ("mlp",) if quick else ("mlp", "linear")
    peak_rows = matmul_peak(quick=quick)
    peak = max(r["gflops"] for r in peak_rows)
    rows: list[dict] = [
        {"workload": "matmul roof", "framework": r["framework"], "gflops": r["gflops"],
         "spread": r["spread"], "note": f"{r['size']} float32"}
        for r in peak_rows
    ]  # fmt: skip
    x, y = mnist_like(n)
    for model in models:
        spec = MODELS[model]
        for batch in batches:
            epoch_times: list[float] = []
            cases, notes = _cases(spec, x, y, batch, epoch_times)
            timings = time_interleaved(cases, repeats=repeats)
            examples = (n // batch) * batch
            rate = {name: examples / t.median for name, t in timings.items()}
            timed = sorted(epoch_times[1:])  # [0] is the warm-up call's epoch
            if timed:
                rate["fnet.fit (epoch_time only)"] = examples / statistics.median(timed)
            workload = f"{model} B={batch}"
            for name, r in sorted(rate.items(), key=lambda kv: -kv[1]):
                t = timings.get(name)
                gflops = r * spec.train_flops / 1e9
                rows.append(
                    {
                        "workload": workload,
                        "framework": name,
                        "samples_per_s": r,
                        "spread": t.spread if t else None,
                        f"x_{REFERENCE.split()[0].lower()}": ratio(r, rate.get(REFERENCE)),
                        "x_scan": ratio(r, rate.get(SCAN)),
                        "gflops": gflops,
                        "pct_peak": 100 * gflops / peak,
                        "compile_s": t.compile_s if t else None,
                        "note": "" if t else "fit's history['epoch_time'], setup excluded",
                    }
                )
            rows += [{"workload": workload, "framework": k, "note": v} for k, v in notes.items()]
    return rows
