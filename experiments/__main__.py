"""Run every experiment and write ``<out>/results.md``: each claim of the lecture material
beside fnet's number and a verdict, the data each experiment actually used, and tables.

Usage::

    python -m experiments                  # the full run (about 40 minutes on 2 cores)
    python -m experiments --quick          # a smoke run of everything (a few minutes)
    python -m experiments --only spiral,graph --out runs/some

Experiments run one after another in this process, each through its ``main(argv)``.
Each ends ``ran`` (it used data and wrote its metrics), ``skipped`` (the data it needs
is on none of the default places; the reason is given) or ``failed``; the summary counts
them. The exit status is 1 if any failed, 2 if ``--data-dir`` was given but does not
exist or holds neither MNIST nor Fashion-MNIST (nothing is run then).
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

from experiments import data as data_mod
from experiments import records
from experiments.claims import CLAIMS, LECTURE_MATERIAL

EXPERIMENTS: tuple[str, ...] = (
    "mnist_classifiers",
    "losses",
    "regularization",
    "capacity",
    "optimizers",
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
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding MNIST and/or Fashion-MNIST (an error if missing or empty); "
        "default: fnet's places ($FNET_DATA_DIR, ~/.cache/fnet, /usr/share/datasets) and "
        "../shared/data for MNIST",
    )
    p.add_argument("--out", default="runs", help="output folder (one sub-folder each)")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    p.add_argument("--download", action="store_true", help="download missing MNIST files")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild results.md from the metrics.json files already in --out",
    )
    return p


def from_disk(name: str, out: pathlib.Path) -> dict[str, Any]:
    """The status and record of an earlier run of ``name`` (``--report-only``)."""
    path = out / name / "metrics.json"
    if not path.is_file():
        return {"name": name, "status": "failed", "why": f"no {path}", "wall": 0.0}
    record = json.loads(path.read_text())
    status, why = _status(record)
    return {
        "name": name,
        "status": status,
        "why": why,
        "wall": record.get("wall_time_s", 0.0),
        "record": record,
    }


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status(record: dict[str, Any]) -> tuple[str, str]:
    """``("ran", "")`` or ``("skipped", why)``: skipped when it used no data at all."""
    data = record.get("data", {})
    if not data.get("used") and data.get("skipped"):
        return "skipped", "; ".join(f"{s['what']}: {s['why']}" for s in data["skipped"])
    return "ran", ""


def run_one(name: str, args: argparse.Namespace, out: pathlib.Path) -> dict[str, Any]:
    """Run ``experiments.<name>.main``; return its status (ran/skipped/failed) and record."""
    argv = ["--out", str(out / name), "--seed", str(args.seed)]
    if args.quick:
        argv.append("--quick")
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    if args.download:
        argv.append("--download")
    start = time.time()

    def failed(why: str) -> dict[str, Any]:
        return {"name": name, "status": "failed", "why": why, "wall": time.time() - start}

    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"experiments.{name}":
            return failed("module not present")
        raise
    try:
        module.main(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return failed(f"exit {exit_.code}")
    except Exception as err:  # report and go on with the other experiments
        traceback.print_exc()
        return failed(f"{type(err).__name__}: {err}")
    metrics_path = out / name / "metrics.json"
    if not (metrics_path.is_file() and metrics_path.stat().st_mtime >= start - 1):
        return failed("no metrics.json written")
    record = json.loads(metrics_path.read_text())
    status, why = _status(record)
    return {
        "name": name,
        "status": status,
        "why": why,
        "wall": time.time() - start,
        "record": record,
    }


def claims_table(runs: Sequence[dict[str, Any]], selected: Sequence[str]) -> list[str]:
    """Markdown rows for every registered claim (run or not)."""
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        for row in run.get("record", {}).get("claims", []):
            rows[row["id"]] = row
    status = {run["name"]: run for run in runs}
    lines = [
        "| claim | source | setting (data actually used) | fnet result | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in CLAIMS:
        row = rows.get(c.id)
        if row is None:
            run = status.get(c.experiment)
            if c.experiment not in selected:
                why = f"not run ({c.experiment} not selected)"
            elif run is None or run["status"] == "ran":
                why = f"not run ({c.experiment} reported nothing on it)"
            else:
                why = f"not run ({c.experiment} {run['status']}: {run.get('why', '')})"
            row = {
                "claim": c.claim,
                "source": c.source,
                "setting": c.setting,
                "result": "-",
                "verdict": why,
            }
        lines.append(
            f"| {_cell(row['claim'])} | {_cell(row['source'])} | {_cell(row['setting'])} "
            f"| {_cell(row['result'])} | {_cell(row['verdict'])} |"
        )
    return lines


def describe(d: dict[str, Any]) -> str:
    """One dataset entry of ``metrics.json`` as a short phrase."""
    if "train_examples" in d and "note" in d:
        return f"{d['train_examples']:,} train / {d.get('test_examples', 0):,} test ({d['note']})"
    if d.get("dataset") == "spiral":
        return (
            f"spiral {d.get('what', '')} ({d.get('n_per_class')} per class, noise "
            f"{d.get('noise')} on the {d.get('noise_on')})"
        )
    return str(d.get("note", d.get("dataset", "?")))


def counts(runs: Sequence[dict[str, Any]]) -> str:
    """E.g. ``"10 ran, 1 skipped, 1 failed"``."""
    n = {s: sum(r["status"] == s for r in runs) for s in ("ran", "skipped", "failed")}
    return f"{n['ran']} ran, {n['skipped']} skipped, {n['failed']} failed"


def write_results(
    out: pathlib.Path, runs: Sequence[dict[str, Any]], args: argparse.Namespace, selected
) -> pathlib.Path:
    """Write ``<out>/results.md`` and return its path."""
    any_record = next((r["record"] for r in runs if r.get("record")), {})
    versions = any_record.get("versions", {})
    total = sum(r["wall"] for r in runs)
    lines = [
        "# fnet experiments: results",
        "",
        f"- run: `python -m experiments{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}` finished "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {total:.0f} s",
        f"- experiments: {counts(runs)}",
        f"- device: {records.device_description()}",
        f"- versions: fnet {versions.get('fnet', '?')}, jax {versions.get('jax', '?')}",
        f"- data folder: {args.data_dir or 'default places (see Data used and skipped)'}",
        f"- claims: {LECTURE_MATERIAL}",
    ]
    if args.quick:
        lines.append(
            "- **QUICK smoke run**: tiny data and few steps; the numbers are not "
            "meaningful and no claim is assessed (verdicts read 'smoke run')."
        )
    lines += [
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
        used = "; ".join(describe(d) for d in data.get("used", []))
        skipped = "; ".join(f"{s['what']}: {s['why']}" for s in data.get("skipped", []))
        why = f": {run['why']}" if run["status"] == "failed" else ""
        lines.append(
            f"- **{run['name']}** ({run['status']}{why}, {run['wall']:.0f} s): used "
            f"{used or 'nothing'}" + (f"; skipped {skipped}" if skipped else "")
        )
    tables = [(run["name"], t) for run in runs for t in run.get("record", {}).get("tables", [])]
    if tables:
        lines += ["", "## Tables"]
        for name, table in tables:
            lines += ["", f"### {table['title']} ({name})", "", *table["lines"]]
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
    """Run the selected experiments, write results.md; return 0, 1 if any failed, 2 on a
    bad ``--data-dir`` or an unknown experiment name (nothing run)."""
    args = _parser().parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()] or list(EXPERIMENTS)
    unknown = [s for s in selected if s not in EXPERIMENTS]
    if unknown:
        print(
            f"error: unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}",
            file=sys.stderr,
        )
        return 2
    if args.data_dir is not None:
        try:
            found = data_mod.check_data_dir(args.data_dir)
        except data_mod.DataDirError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"--data-dir {args.data_dir}: holds {', '.join(data_mod.DATASETS[d] for d in found)}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    runs = []
    for name in selected:
        print(f"\n=== {name} ===", flush=True)
        run = from_disk(name, out) if args.report_only else run_one(name, args, out)
        runs.append(run)
        print(
            f"=== {name}: {run['status']} in {run['wall']:.0f} s"
            + (f" ({run['why']})" if run.get("why") else ""),
            flush=True,
        )
    path = write_results(out, runs, args, selected)
    print(f"\n{'experiment':<20} {'status':<8} {'time':>7}  data")
    for run in runs:
        data = run.get("record", {}).get("data", {})
        used = ", ".join(
            f"{d.get('dataset', '?')}"
            + (f" ({d['train_examples']:,} train)" if "train_examples" in d else "")
            for d in data.get("used", [])
        )
        skipped = "; ".join(f"skipped {s['what']}" for s in data.get("skipped", []))
        extra = f" {run['why']}" if run["status"] == "failed" else ""
        print(
            f"{run['name']:<20} {run['status']:<8} {run['wall']:>6.0f}s  "
            f"{used}{'; ' + skipped if skipped else ''}{extra}"
        )
    print(f"\n{counts(runs)}; all done in {time.time() - start:.0f} s; results: {path}")
    return 1 if any(r["status"] == "failed" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
