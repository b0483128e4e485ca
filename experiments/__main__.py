"""Run every experiment and write ``<out>/results.md``: each claim of SEEDS.md beside
fnet's number and a verdict.

Usage::

    python -m experiments                  # the full run (about 20 minutes on 2 cores)
    python -m experiments --quick          # a smoke run of everything (about 2 minutes)
    python -m experiments --only spiral,graph --out runs/some

Experiments run one after another in this process, each through its ``main(argv)``; a
failing experiment is reported and the others still run; the exit status is non-zero
if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from experiments import common
from experiments.claims import CLAIMS

EXPERIMENTS: tuple[str, ...] = (
    "mnist_classifiers",
    "losses",
    "regularization",
    "activations",
    "templates",
    "convnet",
    "spiral",
    "gradcheck",
    "graph",
    "descent_regimes",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Run fnet's experiments and write results.md (claim | source | setting | "
        "fnet result | verdict).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smoke-run every experiment")
    p.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(EXPERIMENTS)}"
    )
    p.add_argument("--data-dir", default=common.default_data_dir(), help="MNIST folder")
    p.add_argument("--out", default="runs", help="output folder (one sub-folder each)")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    p.add_argument("--download", action="store_true", help="download missing datasets")
    return p


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def run_one(name: str, args: argparse.Namespace, out: pathlib.Path) -> dict[str, Any]:
    """Run ``experiments.<name>.main`` and return its status and metrics record."""
    argv = ["--out", str(out / name), "--seed", str(args.seed)]
    if args.quick:
        argv.append("--quick")
    if args.data_dir:
        argv += ["--data-dir", str(args.data_dir)]
    if args.download:
        argv.append("--download")
    start = time.time()
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"experiments.{name}":
            return {"name": name, "status": "skipped", "why": "module not present", "wall": 0.0}
        raise
    try:
        module.main(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return {"name": name, "status": "failed", "why": f"exit {exit_.code}",
                    "wall": time.time() - start}  # fmt: skip
    except Exception as err:  # report and go on with the other experiments
        traceback.print_exc()
        return {"name": name, "status": "failed", "why": f"{type(err).__name__}: {err}",
                "wall": time.time() - start}  # fmt: skip
    metrics_path = out / name / "metrics.json"
    record: dict[str, Any] = {}
    if metrics_path.is_file() and metrics_path.stat().st_mtime >= start - 1:
        record = json.loads(metrics_path.read_text())
    else:
        return {"name": name, "status": "failed", "why": "no metrics.json written",
                "wall": time.time() - start}  # fmt: skip
    return {"name": name, "status": "ok", "wall": time.time() - start, "record": record}


def claims_table(runs: Sequence[dict[str, Any]], selected: Sequence[str]) -> list[str]:
    """Markdown rows for every registered claim (run or not), then any other claims."""
    rows: dict[str, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    registered = {c.id for c in CLAIMS}
    for run in runs:
        for row in run.get("record", {}).get("claims", []):
            if row.get("id") in registered:
                rows[row["id"]] = row
            else:
                extra.append(row)
    status = {run["name"]: run for run in runs}
    lines = [
        "| claim | source | setting | fnet result | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in CLAIMS:
        row = rows.get(c.id)
        if row is None:
            run = status.get(c.experiment)
            if c.experiment not in selected:
                why = f"not run ({c.experiment} not selected)"
            elif run is None or run["status"] == "ok":
                why = f"not run ({c.experiment} reported nothing on it)"
            else:
                why = f"not run ({c.experiment} {run['status']}: {run.get('why', '')})"
            row = {"claim": c.claim, "source": c.source, "setting": c.setting,
                   "result": "-", "verdict": why}  # fmt: skip
        lines.append(
            f"| {_cell(row['claim'])} | {_cell(row['source'])} | {_cell(row['setting'])} "
            f"| {_cell(row['result'])} | {_cell(row['verdict'])} |"
        )
    for row in extra:
        lines.append(
            "| " + " | ".join(_cell(row.get(k, "-")) for k in
                              ("claim", "source", "setting", "result", "verdict")) + " |"
        )  # fmt: skip
    return lines


def _describe(d: dict[str, Any]) -> str:
    """One dataset entry of ``metrics.json`` as a short phrase."""
    if d.get("dataset") == "MNIST":
        return f"MNIST: {d['train_examples']:,} train / {d['test_examples']:,} test ({d['note']})"
    if d.get("dataset") == "spiral":
        return (
            f"spiral {d.get('what', '')} ({d.get('n_per_class')} per class, noise "
            f"{d.get('noise')} on the {d.get('noise_on')})"
        )
    return str(d.get("note", d.get("dataset", "?")))


def write_results(
    out: pathlib.Path, runs: Sequence[dict[str, Any]], args: argparse.Namespace, selected
) -> pathlib.Path:
    """Write ``<out>/results.md`` and return its path."""
    any_record = next((r["record"] for r in runs if r.get("record")), {})
    versions = any_record.get("versions", {})
    lines = [
        "# fnet experiments: results",
        "",
        f"- run: `python -m experiments{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}` finished "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (" (QUICK smoke run: numbers are not meaningful)" if args.quick else ""),
        f"- device: {common.device_description()}",
        f"- versions: fnet {versions.get('fnet', '?')}, jax {versions.get('jax', '?')}",
        f"- data folder: {args.data_dir or '(fnet default cache)'}",
        "",
        "## Claims",
        "",
        *claims_table(runs, selected),
        "",
        "## Data used and skipped",
        "",
    ]
    for run in runs:
        rec = run.get("record", {})
        data = rec.get("data", {})
        used = "; ".join(_describe(d) for d in data.get("used", []))
        skipped = "; ".join(f"{s['what']}: {s['why']}" for s in data.get("skipped", []))
        lines.append(
            f"- **{run['name']}** ({run['status']}"
            + (f": {run['why']}" if run.get("why") else "")
            + f", {run['wall']:.0f} s): used {used or 'nothing'}"
            + (f"; skipped {skipped}" if skipped else "")
        )
    lines += ["", "## Other results", ""]
    for run in runs:
        for h in run.get("record", {}).get("headline", []):
            lines.append(f"- {h}")
    lines += ["", "## Figures", ""]
    for run in runs:
        for fig in run.get("record", {}).get("figures", []):
            lines.append(f"- [{run['name']}/{fig}]({run['name']}/{fig})")
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected experiments, write results.md; return 0, or 1 if any failed."""
    args = _parser().parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()] or list(EXPERIMENTS)
    unknown = [s for s in selected if s not in EXPERIMENTS]
    if unknown:
        print(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    runs = []
    for name in selected:
        print(f"\n=== {name} ===", flush=True)
        run = run_one(name, args, out)
        runs.append(run)
        print(f"=== {name}: {run['status']} in {run['wall']:.0f} s"
              + (f" ({run['why']})" if run.get("why") else ""), flush=True)  # fmt: skip
    path = write_results(out, runs, args, selected)
    print(f"\n{'experiment':<20} {'status':<8} {'time':>7}  data")
    for run in runs:
        data = run.get("record", {}).get("data", {})
        used = ", ".join(
            f"{d.get('dataset', '?')}"
            + (f" ({d['train_examples']:,} train)" if "train_examples" in d else "")
            for d in data.get("used", [])
        )
        skipped = "; ".join(f"skipped {s['what']}: {s['why']}" for s in data.get("skipped", []))
        extra = run.get("why", "")
        print(f"{run['name']:<20} {run['status']:<8} {run['wall']:>6.0f}s  "
              f"{used}{'; ' + skipped if skipped else ''}{extra}")  # fmt: skip
    print(f"\nall done in {time.time() - start:.0f} s; results: {path}")
    return 1 if any(r["status"] == "failed" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
