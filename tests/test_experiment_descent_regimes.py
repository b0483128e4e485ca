"""experiments.descent_regimes --quick: runs, writes metrics.json with sane values and PNGs."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_run_writes_sane_metrics_and_figures(tmp_path):
    # A smoke run is dominated by XLA compilation: compile without backend optimisation
    # (about 40% less CPU time here; the numbers it checks do not depend on it).
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XLA_FLAGS": flags.strip()}
    subprocess.run(
        [sys.executable, "-m", "experiments.descent_regimes", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"] == "descent_regimes"
    assert record["config"]["n_train"] > 0 and record["wall_time_s"] > 0
    assert {"fnet", "jax"} <= set(record["versions"])
    used = record["data"]["used"][0]
    assert used["dataset"] in ("MNIST", "spiral") and used["why"]
    m = record["metrics"]

    # 1: measured variance follows the prediction; exactly 0 at B = N without replacement.
    v = m["variance_vs_batch"]
    for sampling in ("with_replacement", "without_replacement"):
        meas, pred = v[sampling]["measured"], v[sampling]["predicted"]
        for b, mv, pv, se in zip(
            v["batch"], meas, pred, v[sampling]["standard_error"], strict=True
        ):
            if b < v["batch"][-1]:
                assert abs(mv - pv) < 5 * se + 0.05 * pv, (sampling, b, mv, pv, se)
    assert v["without_replacement"]["predicted"][-1] == 0.0
    assert v["without_replacement"]["measured"][-1] < 1e-6 * v["without_replacement"]["measured"][0]
    assert math.isclose(v["grad_sq_norm"], v["grad_sq_norm_from_gram"], rel_tol=1e-3)

    # 2, 4: every run trained; the losses are finite and fell.
    for name in ("sgd", "minibatch", "full_batch", "momentum"):
        loss = m["curves"][name]["loss"]
        assert all(math.isfinite(x) for x in loss), name
        assert loss[-1] < loss[0], name
    # 7: the class-sorted, unshuffled control ends worse than shuffled mini-batches.
    assert m["final_loss"]["sorted_no_shuffle"] > m["final_loss"]["minibatch"]
    assert m["best_lr"]["sgd"] > 0

    # 5, 6, 3: noise scales, steps to target, best lr per batch size.
    assert all(r["b_simple"] > 0 for r in m["noise_scales_over_training"])
    st = m["steps_to_target"]
    reached = [r for r in st["runs"] if r["steps"] is not None]
    assert len(reached) >= 2
    assert st["s_min"] <= reached[0]["steps"]
    assert "verdict" in st["noise_scale_vs_critical"]
    assert set(m["best_lr_vs_batch"]) == {str(r["batch"]) for r in st["runs"]}

    for fig in record["figures"]:
        assert (tmp_path / fig).stat().st_size > 1000
    assert len(record["figures"]) == 7
