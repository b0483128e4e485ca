"""The complete example scripts run, in their --quick mode, as a user would run them."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mnist_convnet_example_trains_resumes_predicts_and_restores(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
    }  # fmt: skip  (compile-bound)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist_convnet.py"), "--quick",
         "--data-dir", str(mnist_dir), "--run-dir", str(run_dir)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"fit: resuming from epoch 2 of 4 ({run_dir / 'checkpoints'})" in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = summary["epochs"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))
    assert summary["restored_step"] == epochs
    assert summary["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert f"restored epoch {epochs} without the optimizer" in result.stdout
    assert "per-example gradient norms on 50 test images" in result.stdout
