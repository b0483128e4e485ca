"""The benchmark CLI: ``python -m benchmarks [--quick] [--only NAME[,NAME]] [--out DIR]``.

Runs each selected benchmark's ``run(quick)``, prints its rows as a Markdown table, and
writes ``DIR/NAME.json`` (rows, machine, wall time) plus ``DIR/results.md`` (all tables).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS
from benchmarks.harness import SKIP_PEERS_ENV, machine_info, markdown_table
from benchmarks.report import targets


def _load(name: str) -> tuple[Any, str | None]:
    """The benchmark module, or ``(None, note)`` if it (not a dependency) is missing."""
    module_name = f"benchmarks.{name}"
    try:
        return importlib.import_module(module_name), None
    except ModuleNotFoundError as err:
        if err.name == module_name:
            return None, f"skipped: {module_name} does not exist yet"
        return None, f"skipped: {module_name} needs {err.name!r}, which is not installed"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="fnet's benchmark suite: ratios to peers measured side by side in one run.",
        epilog="benchmarks: " + ", ".join(BENCHMARKS),
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1-2 repeats")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default="benchmarks/results", help="folder for JSON/Markdown")
    parser.add_argument(
        "--skip-peers", action="store_true",
        help="skip the optional peers (torch, flax, equinox, haiku) even if installed",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; returns the exit status (1 if any benchmark raised)."""
    args = _parse(argv)
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:20s} {what}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    if args.skip_peers:
        os.environ[SKIP_PEERS_ENV] = "1"
    # PyTorch's OpenMP threads spin at barriers; on a shared 2-core machine (or beside
    # XLA's threads in this process) that turns a 10 ms step into 100+ ms. Passive
    # waiting is set before torch loads; export another value to override it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    mode = "quick" if args.quick else "full"
    sections = [
        f"# fnet benchmarks ({mode})\n",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + "".join(f"; {k}={v}" for k, v in machine["env"].items())
        + "\n",
    ]
    print("\n".join(sections))
    status = 0
    for name in names:
        module, note = _load(name)
        t = time.perf_counter()
        error = None
        rows: list[dict] = []
        if module is not None:
            try:
                rows = list(module.run(args.quick))
            except Exception as err:  # report and go on with the other benchmarks
                error = f"{type(err).__name__}: {err}"
                status = 1
        wall = time.perf_counter() - t
        header = f"## {name}\n\n{BENCHMARKS[name]} ({wall:.1f} s)\n"
        body = note or (f"FAILED: {error}\n" if error else markdown_table(rows))
        section = f"{header}\n{body}"
        print(section, flush=True)
        sections.append(section)
        record = {
            "benchmark": name, "mode": mode, "wall_s": wall, "skipped": note, "error": error,
            "machine": machine, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": rows,
        }  # fmt: skip
        (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    if {"training", "per_example_peers", "dispatch"} & set(names):
        section = "## targets\n\n" + markdown_table(targets(out))
        print(section)
        sections.append(section)
    (out / "results.md").write_text("\n".join(sections))
    return status


if __name__ == "__main__":
    sys.exit(main())
