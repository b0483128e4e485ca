"""L2 regularization on the slides' 2-D demo: the spiral, a 2-layer net, lambda in
{0, 0.001, 0.01, 0.1}: decision boundaries, train/test accuracy, weight norms, and
the slides' motivation for L2 (spread vs concentrated weights) as a printed check.

Smoothness is measured, not eyeballed: the decision boundary's length on a 200x200
grid (a jagged boundary that wraps single points is longer than a smooth one).

The objective is ``mean cross-entropy + lambda * fnet.regularizers.l2(params)`` (the
slides' ``L = (1/N) sum_i L_i + lambda R(W)``, ``R`` the sum of squared weights, biases
not penalised). lambda travels in the objective's non-trainable state, so one compiled
epoch serves every lambda and seed.

Run: ``python -m experiments.regularization [--quick] [--out runs/regularization]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import cli, plotting, records
from experiments.claims import claim_row
from experiments.data import load_spiral, spiral_info
from fnet import losses, metrics, models, regularizers, train

NAME = "regularization"
LAMBDAS = (0.0, 0.001, 0.01, 0.1)  # the slides' values, plus 0
SWEEP = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # finer, for the curves (full runs)
EXTENT = (-1.25, 1.25, -1.25, 1.25)


def l2_objective(model: Any) -> train.Objective:
    """``cross_entropy + state["lam"] * l2(params)``: lambda as (non-trainable) state."""

    def objective(params, state, x, y, key, *, train: bool = True):
        scores = model.apply(params, x, key=key, train=train)
        data_loss = losses.softmax_cross_entropy(scores, y)
        penalty = state["lam"] * regularizers.l2(params)
        stats = {"loss": data_loss, "accuracy": metrics.accuracy(scores, y), "penalty": penalty}
        return data_loss + penalty, (state, stats)

    return objective


def spread_vs_concentrated() -> dict[str, Any]:
    """The slides' example: two weight vectors with the same score, different L2."""
    x = jnp.ones((4,), jnp.float32)
    w_conc = jnp.array([1.0, 0.0, 0.0, 0.0], jnp.float32)
    w_spread = jnp.full((4,), 0.25, jnp.float32)
    return {
        "x": x,
        "w_concentrated": w_conc,
        "w_spread": w_spread,
        "score_concentrated": float(w_conc @ x),
        "score_spread": float(w_spread @ x),
        "l2_concentrated": float(regularizers.l2({"w": w_conc})),
        "l2_spread": float(regularizers.l2({"w": w_spread})),
        "l1_concentrated": float(regularizers.l1({"w": w_conc})),
        "l1_spread": float(regularizers.l1({"w": w_spread})),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    quick = args.quick
    config = {
        "quick": quick,
        "seed": args.seed,
        "lambdas": list(LAMBDAS),
        "sweep": list(LAMBDAS if quick else SWEEP),
        "model": "2-100-3, ReLU hidden layer, softmax output",
        "n_train_per_class": 100,
        "n_test_per_class": 300 if quick else 1000,
        "noise": "angle, 0.2",
        "optimizer": "SGD lr 0.5, momentum 0.9, full batch",
        "epochs": 300 if quick else 3000,
        "seeds": 1 if quick else 3,
        "grid": "200 x 200 over [-1.25, 1.25]^2",
    }
    out = args.out

    check = spread_vs_concentrated()
    print(
        "[regularization] slides' L2 example: x = (1,1,1,1); "
        f"w1 = (1,0,0,0) scores {check['score_concentrated']:.2f}, "
        f"L2 {check['l2_concentrated']:.4f}; "
        f"w2 = (.25,.25,.25,.25) scores {check['score_spread']:.2f}, L2 {check['l2_spread']:.4f} "
        f"-> L2 prefers w2; L1: {check['l1_concentrated']:.2f} vs {check['l1_spread']:.2f} (tie)"
    )

    model = models.mlp([100], 3, "relu")
    objective = l2_objective(model)
    optimizer = optax.sgd(0.5, momentum=0.9)
    predict = jax.jit(model.apply)
    per_seed: list[dict[str, list[float]]] = []
    panels: dict[float, Any] = {}
    x_tr0 = y_tr0 = None
    for s in range(config["seeds"]):
        seed = args.seed + s
        x_tr, y_tr = load_spiral(100, seed=seed)
        x_te, y_te = load_spiral(config["n_test_per_class"], seed=seed + 1000)
        if s == 0:
            x_tr0, y_tr0 = x_tr, y_tr
        _, init_params = model.init(jax.random.key(seed), (-1, 2))
        keys = ("lambda", "train_accuracy", "test_accuracy", "boundary_length")
        keys += ("w_norm_hidden", "w_norm_output", "data_loss")
        row: dict[str, list[float]] = {k: [] for k in keys}
        for lam in config["sweep"]:
            print(f"[regularization] seed {seed}, lambda {lam}")
            result = train.fit(
                objective,
                init_params,
                optimizer,
                x_tr,
                y_tr,
                key=jax.random.key(seed + 1),
                epochs=config["epochs"],
                batch_size=len(y_tr),
                state={"lam": jnp.float32(lam)},
            )
            p = result.params
            acc = lambda x, y, p=p: float(np.mean(np.argmax(predict(p, x), 1) == y))
            _, _, classes = plotting.predict_grid(lambda pts, p=p: predict(p, pts), EXTENT)
            row["lambda"].append(lam)
            row["train_accuracy"].append(acc(x_tr, y_tr))
            row["test_accuracy"].append(acc(x_te, y_te))
            row["boundary_length"].append(plotting.boundary_length(classes, EXTENT))
            row["w_norm_hidden"].append(float(jnp.linalg.norm(p["dense_0"]["w"])))
            row["w_norm_output"].append(float(jnp.linalg.norm(p["dense_1"]["w"])))
            row["data_loss"].append(result.history["train_loss"][-1])
            if s == 0 and lam in LAMBDAS:
                panels[lam] = p
        per_seed.append(row)

    mean = {k: np.mean([r[k] for r in per_seed], axis=0).tolist() for k in per_seed[0]}

    fig, axes = plt.subplots(1, len(LAMBDAS), figsize=(3.0 * len(LAMBDAS), 3.3))
    sweep = config["sweep"]
    for ax, lam in zip(axes, LAMBDAS, strict=True):
        p = panels[lam]
        r = per_seed[0]
        i = sweep.index(lam)
        plotting.plot_decision_boundary(
            ax, lambda pts, p=p: predict(p, pts), x_tr0, y_tr0, extent=EXTENT,
            title=f"lambda = {lam:g}\ntrain {r['train_accuracy'][i]:.0%}, "
            f"test {r['test_accuracy'][i]:.0%}, boundary {r['boundary_length'][i]:.1f}",
        )  # fmt: skip
    figures = [plotting.save_figure(fig, out, "regularization_boundaries.png")]

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    xs = np.arange(len(sweep))
    labels = [f"{lam:g}" for lam in sweep]
    axes[0].plot(xs, mean["train_accuracy"], "o-", label="train")
    axes[0].plot(xs, mean["test_accuracy"], "s-", label="test")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    axes[1].plot(xs, mean["w_norm_hidden"], "o-", label="||W_h||")
    axes[1].plot(xs, mean["w_norm_output"], "s-", label="||W_y||")
    axes[1].set_ylabel("Frobenius norm")
    axes[1].legend(fontsize=8)
    axes[2].plot(xs, mean["boundary_length"], "o-")
    axes[2].set_ylabel("decision-boundary length")
    for ax in axes:
        ax.set_xticks(xs, labels, rotation=45, fontsize=7)
        ax.set_xlabel("lambda")
    fig.suptitle(f"mean over {config['seeds']} seed(s)", fontsize=9)
    figures.append(plotting.save_figure(fig, out, "regularization_vs_lambda.png"))

    idx = [sweep.index(lam) for lam in LAMBDAS]

    def at(values: Sequence[float]) -> list[float]:
        return [values[i] for i in idx]

    bl = at(mean["boundary_length"])
    test_acc = at(mean["test_accuracy"])
    smoother = bl[1] > bl[2] > bl[3]
    seeds_ok = sum(b[1] > b[2] > b[3] for b in (at(r["boundary_length"]) for r in per_seed))
    result_text = (
        "boundary length (mean of {n} seeds) at lambda 0 / 0.001 / 0.01 / 0.1: "
        "{b}; test accuracy {t}; ||W_h|| {w}".format(
            n=config["seeds"],
            b=" / ".join(f"{v:.1f}" for v in bl),
            t=" / ".join(f"{v:.0%}" for v in test_acc),
            w=" / ".join(f"{v:.1f}" for v in at(mean["w_norm_hidden"])),
        )
    )
    if smoother and seeds_ok == len(per_seed) and test_acc[3] <= 0.4:
        verdict = (
            "partly: smoother from 0.001 to 0.01, but at 0.1 the penalty (mean loss + "
            "lambda * sum W^2, as written in the slides) flattens the net to a single class"
        )
    elif smoother and seeds_ok == len(per_seed):
        verdict = "reproduced"
    elif smoother:
        verdict = f"partly (monotone on average, in {seeds_ok} of {len(per_seed)} seeds)"
    else:
        verdict = "not reproduced (boundary length not decreasing in lambda)"
    claims = [
        claim_row(
            "lambda_smoother",
            result_text,
            verdict,
            setting="spiral (angle noise 0.2, 100/class), 2-100-3 ReLU, full-batch SGD",
        ),
        claim_row(
            "l2_prefers_spread",
            f"both score {check['score_spread']:.2f}; L2 = {check['l2_concentrated']:.4f} "
            f"(concentrated) vs {check['l2_spread']:.4f} (spread); L1 ties at "
            f"{check['l1_spread']:.2f}",
            "reproduced"
            if check["l2_spread"] < check["l2_concentrated"]
            and check["score_spread"] == check["score_concentrated"]
            else "not reproduced",
        ),
    ]
    headline = [f"regularization: {result_text}"]
    metrics_out = {
        "per_lambda_mean": dict(zip(mean.keys(), mean.values(), strict=True)),
        "per_seed": per_seed,
        "spread_vs_concentrated": check,
    }
    data = {
        "used": [
            spiral_info(100, 0.2, "angle", "training set"),
            spiral_info(config["n_test_per_class"], 0.2, "angle", "test set (fresh)"),
        ],
        "skipped": [],
    }
    return records.write_metrics(
        out, config, metrics_out, data, timer(), name=NAME, claims=claims, headline=headline,
        figures=figures,
    )  # fmt: skip


if __name__ == "__main__":
    cli.main(main)
