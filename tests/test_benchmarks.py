"""The benchmark harness works: ``python -m benchmarks --quick`` writes JSON and tables.

Benchmarks are not tests: nothing here asserts a speed. Optional peers (torch, flax,
equinox, haiku) are skipped (``--skip-peers``), so this passes with ``.[test]`` alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not installed; plain `pytest` lacks the cwd
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    Timing,
    markdown_table,
    optional_import,
    ratio,
    time_interleaved,
)


def test_quick_cli_writes_json_and_a_table(tmp_path: Path) -> None:
    # The harness is checked, not the speeds: compiled without backend optimisation (a
    # quick run is compile-bound; 40% less CPU time), in its own process (an XLA flag).
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags.strip()}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--skip-peers", "--only", "training",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## training" in proc.stdout
    assert "| workload | framework |" in proc.stdout
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["mode"] == "quick" and record["error"] is None
    frameworks = {r["framework"] for r in record["rows"]}
    assert {"fnet.fit", "jax.jit loop", "jax.lax.scan epoch", "NumPy (hand-written)"} <= frameworks
    skipped = [r for r in record["rows"] if r["framework"] == "PyTorch eager"]
    assert skipped and "skipped" in skipped[0]["note"]
    assert all(r["samples_per_s"] > 0 for r in record["rows"] if "samples_per_s" in r)
    assert "## training" in (tmp_path / "results.md").read_text()
    assert "## targets" in proc.stdout and "linear B=100" in proc.stdout


def test_missing_module_is_skipped_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.BENCHMARKS, "no_such_benchmark", "a module that does not exist")
    assert cli.main(["--quick", "--only", "no_such_benchmark", "--out", str(tmp_path)]) == 0
    assert "does not exist yet" in capsys.readouterr().out
    record = json.loads((tmp_path / "no_such_benchmark.json").read_text())
    assert record["rows"] == [] and "skipped" in record["skipped"]


def test_unknown_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--only", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_timing_statistics_and_helpers() -> None:
    t = Timing(compile_s=1.0, times=(1.0, 2.0, 3.0, 4.0, 100.0), minflt=0.0)
    assert t.median == 3.0 and t.as_dict()["repeats"] == 5
    assert 0 < t.spread < 40
    calls = []
    out = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           repeats=2)  # fmt: skip
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert all(len(v.times) == 2 and v.minflt >= 0 for v in out.values())
    assert ratio(2.0, 4.0) == 0.5 and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    module, note = optional_import("surely_not_an_installed_module")
    assert module is None and note is not None and "not installed" in note
    table = markdown_table([{"a": 1.5, "b": "x|y"}, {"a": None, "c": 123456.0}])
    assert table.splitlines()[0] == "| a | b | c |"
    assert "x\\|y" in table and "123,456" in table
