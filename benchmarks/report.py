"""The issue's targets, checked against the JSON of one run: ``python -m benchmarks.report``.

Reads ``DIR/{training,per_example_peers,dispatch}.json`` (default ``benchmarks/results``)
and prints a Markdown table: target, measured ratio, met / not met. A target whose
benchmark was not run (or whose peer was skipped) reads "not measured".
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import markdown_table

__all__ = ["targets"]

Rows = list[dict[str, Any]]


def _load(folder: Path, name: str) -> Rows:
    path = folder / f"{name}.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("rows", []))


def _pick(rows: Rows, **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _training(rows: Rows, workload: str) -> tuple[float | None, str | None, float | None]:
    """fnet.fit's ratio to the scan epoch, the best other peer and fnet's ratio to it."""
    fnet = _pick(rows, workload=workload, framework="fnet.fit")
    peers = [
        r
        for r in rows
        if r.get("workload") == workload
        and r.get("samples_per_s")
        and not str(r["framework"]).startswith("fnet")
    ]
    if fnet is None or not peers:
        return None, None, None
    best = max(peers, key=lambda r: r["samples_per_s"])
    return fnet.get("x_scan"), best["framework"], fnet["samples_per_s"] / best["samples_per_s"]


def targets(folder: Path) -> Rows:
    """One row per target of the issue, from the JSON in ``folder``."""
    training = _load(folder, "training")
    per_ex = _load(folder, "per_example_peers")
    dispatch = _load(folder, "dispatch")
    out: Rows = []

    def add(target: str, value: Any, ok: Callable[[float], bool], how: str) -> None:
        status = "not measured" if value is None else ("met" if ok(value) else "NOT met")
        out.append({"target": target, "measured": value, "means": how, "status": status})

    for workload in ("mlp B=100", "mlp B=1000"):
        x_scan, best, x_best = _training(training, workload)
        add(f"{workload}: fnet.fit >= lax.scan epoch", x_scan, lambda v: v >= 1.0,
            "fnet.fit samples/s / scan samples/s")  # fmt: skip
        add(f"{workload}: fnet.fit faster than every peer", x_best, lambda v: v > 1.0,
            f"fnet.fit / best peer ({best})")  # fmt: skip
    row = _pick(training, workload="mlp B=1000", framework="fnet.fit")
    add("mlp B=1000: >= 75% of matmul peak", row and row.get("pct_peak"), lambda v: v >= 75,
        "% of the measured 2048^3 GEMM GFLOP/s (exact FLOPs)")  # fmt: skip
    fnet = _pick(training, workload="linear B=100", framework="fnet.fit")
    npy = _pick(training, workload="linear B=100", framework="NumPy (hand-written)")
    add("linear B=100: fnet.fit beats hand-written NumPy",
        fnet and npy and fnet["samples_per_s"] / npy["samples_per_s"], lambda v: v > 1.0,
        "fnet.fit samples/s / NumPy samples/s")  # fmt: skip
    for allocator in ("default", "glibc hugetlb=1"):
        for batch in (32, 128, 512, "N=60000"):
            for what in ("stats", "norms"):
                r = _pick(per_ex, allocator=allocator, batch=batch, framework="fnet", computes=what)
                if r is None and (what == "norms" and batch == "N=60000"):
                    continue
                add(f"{what} at batch {batch} <= 1.5x batch grad ({allocator} malloc)",
                    r and r.get("x_batch_grad"), lambda v: v <= 1.5,
                    "fnet time / fnet batch-gradient time")  # fmt: skip
        r = _pick(per_ex, allocator=allocator, batch=512, framework="fnet", computes="grads")
        add(f"grads at batch 512 faster than torch.func ({allocator} malloc)",
            r and r.get("x_torch_func_grads"), lambda v: v < 1.0,
            "fnet.per_example.grads time / torch.func time")  # fmt: skip
    for name, ref in (("fnet train_step", "raw jax.jit step"),
                      ("fnet train_step (donate)", "raw jax.jit step (donate)")):  # fmt: skip
        r = _pick(dispatch, framework=name)
        b = _pick(dispatch, framework=ref)
        add(f"dispatch: {name} within 5% of {ref}", r and b and r["value"] / b["value"],
            lambda v: v <= 1.05, "us/step ratio, tiny MLP in a Python loop")  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the targets table for the results in ``--results``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    print(markdown_table(targets(Path(args.results))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
