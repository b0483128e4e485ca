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


def test_trainer_is_heavy_ball_momentum_for_every_stacked_learning_rate():
    # The experiment trains with fnet.train.train_step and optax.sgd (hyperparameters
    # injected): for each learning rate the same as v = mu v + g; p = p - lr v.
    import chex
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import descent_regimes as dr
    from fnet import models
    from fnet.losses import softmax_cross_entropy
    from fnet.train import supervised

    model = models.mlp([5], 3, "tanh")
    _, params0 = model.init(jax.random.key(0), (-1, 4))
    x = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    y = np.arange(12, dtype=np.int32) % 3
    objective = supervised(model, softmax_cross_entropy)
    lrs, mu, batch = [0.1, 0.5], 0.9, 4  # 3 batches an epoch, 5 steps: crosses an epoch
    runner = dr.Runner(objective, jnp.asarray(x), jnp.asarray(y), jax.random.key(1))
    states = runner.train(dr.init_states(params0, lrs, mu), batch, 0, 5, shuffle=False)

    grad = jax.jit(jax.grad(lambda p, xb, yb: softmax_cross_entropy(model.apply(p, xb), yb)))
    for i, lr in enumerate(lrs):
        p, v = params0, jax.tree.map(jnp.zeros_like, params0)
        for s in range(5):
            j = (s % 3) * batch
            g = grad(p, x[j : j + batch], y[j : j + batch])
            v = jax.tree.map(lambda v, g: mu * v + g, v, g)
            p = jax.tree.map(lambda p, v, lr=lr: p - lr * v, p, v)
        got = jax.tree.map(lambda a, i=i: a[i], states.params)
        chex.assert_trees_all_close(got, p, rtol=1e-5, atol=1e-6)


def test_side_by_side_panels_keep_each_y_label_clear_of_the_left_neighbour(monkeypatch):
    # issue 13: regimes_loss's right-hand y-labels overlapped the left panels' ticks.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments import descent_regimes as dr

    panels = [
        dr.Panel([([1, 10, 100], [3.0, 1.0, 0.3], "-", "a")], "x", "training loss", yscale="log")
        for _ in range(3)
    ]
    saved = {}

    def keep(fig, out, name):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = fig.axes
        saved["gaps"] = [
            axes[k].yaxis.label.get_window_extent(renderer).x0
            - axes[k - 1].get_tightbbox(renderer).x1
            for k in (1, 2)
        ]
        plt.close(fig)
        return name

    monkeypatch.setattr(dr.plotting, "save_figure", keep)
    dr.save_panels("unused", "three.png", panels, "title")
    assert all(gap > 0 for gap in saved["gaps"]), saved["gaps"]
