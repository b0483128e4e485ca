"""The lecture's advice "Do not use size of neural network as a regularizer. Use stronger
regularization instead", tested on a grid of hidden-layer sizes x L2 strengths.

Two tasks: the 3-class spiral with noise on the coordinates (0.2: the classes overlap,
the Bayes-optimal accuracy is 73%, so a big unregularized net can overfit) and MNIST-5k
(784-H-10 ReLU nets on 4,000 training images). Each net is trained with
``mean cross-entropy + lambda * sum W^2`` (biases not penalised; lambda in the
objective's state, so one compiled epoch serves every lambda). Every choice is made on a
held-out validation set and scored on a separate test set:

- "size as the regularizer": the best size with lambda = 0;
- "stronger regularization": the largest net with the best lambda.

The advice holds when the second is at least as good as the first. Decision boundaries
on the spiral show what each does.

Run: ``python -m experiments.capacity [--quick] [--data-dir DIR] [--epochs N] [--lr LR]
[--batch-size B]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import cli
from experiments.claims import claim_row
from experiments.data import load_spiral, spiral_info
from experiments.plotting import plot_decision_boundary, save_figure
from experiments.regularization import l2_objective
from fnet import models, train

NAME = "capacity"
EXTENT = (-1.6, 1.6, -1.6, 1.6)
SPIRAL = {"sizes": (3, 10, 30, 100, 300), "lambdas": (0.0, 1e-4, 1e-3, 3e-3, 1e-2)}
IMAGES = {"sizes": (10, 30, 100, 300), "lambdas": (0.0, 1e-4, 1e-3, 1e-2)}
QUICK = {"sizes": (3, 100), "lambdas": (0.0, 1e-2)}


def grid_fit(
    task: str,
    make: Any,
    split: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    sizes: Sequence[int],
    lambdas: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    batch: int,
    lr: float,
    input_shape: tuple[int, ...],
) -> dict[str, Any]:
    """Train ``make(size)`` for every size, lambda and seed; return accuracies
    ``[size][lambda]`` (mean over seeds) and the params of the first seed."""
    acc = {k: np.zeros((len(sizes), len(lambdas))) for k in ("train", "val", "test")}
    params_of: dict[tuple[int, float], Any] = {}
    optimizer = optax.sgd(lr, momentum=0.9)
    for i, size in enumerate(sizes):
        model = make(size)
        objective = l2_objective(model)
        for seed in seeds:
            _, init = model.init(jax.random.key(seed), (-1, *input_shape))
            for j, lam in enumerate(lambdas):
                print(f"[{NAME}] {task}: hidden {size}, lambda {lam:g}, seed {seed}", flush=True)
                fit = train.fit(
                    objective,
                    init,
                    optimizer,
                    *split["train"],
                    key=jax.random.key(seed + 1),
                    epochs=epochs,
                    batch_size=batch,
                    state={"lam": jnp.float32(lam)},
                    progress=False,
                )
                for k in acc:
                    ev = train.evaluate(model, fit.params, *split[k])
                    acc[k][i, j] += ev["accuracy"] / len(seeds)
                if seed == seeds[0]:
                    params_of[(size, lam)] = (model, fit.params)
    return {"sizes": list(sizes), "lambdas": list(lambdas), "accuracy": acc, "params": params_of}


def compare(res: dict[str, Any]) -> dict[str, Any]:
    """The two choices of the module docstring, each picked on validation accuracy."""
    acc = res["accuracy"]
    i_small = int(np.argmax(acc["val"][:, 0]))
    j_reg = int(np.argmax(acc["val"][-1, :]))
    i_all, j_all = np.unravel_index(int(np.argmax(acc["val"])), acc["val"].shape)
    return {
        "size_only": {
            "size": res["sizes"][i_small],
            "lambda": 0.0,
            "test_accuracy": float(acc["test"][i_small, 0]),
        },
        "largest_regularized": {
            "size": res["sizes"][-1],
            "lambda": res["lambdas"][j_reg],
            "test_accuracy": float(acc["test"][-1, j_reg]),
        },
        "best_overall": {
            "size": res["sizes"][int(i_all)],
            "lambda": res["lambdas"][int(j_all)],
            "test_accuracy": float(acc["test"][i_all, j_all]),
        },
    }


def heatmap(ax: Any, res: dict[str, Any], title: str) -> None:
    """Test accuracy over the size x lambda grid, each cell annotated."""
    acc = res["accuracy"]["test"]
    ax.imshow(acc, cmap="viridis", aspect="auto", vmin=acc.min(), vmax=acc.max())
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            light = acc[i, j] < (acc.min() + acc.max()) / 2
            ax.text(
                j,
                i,
                f"{acc[i, j]:.1%}",
                ha="center",
                va="center",
                fontsize=7,
                color="w" if light else "k",
            )
    ax.set_xticks(range(len(res["lambdas"])), [f"{v:g}" for v in res["lambdas"]], fontsize=7)
    ax.set_yticks(range(len(res["sizes"])), [str(s) for s in res["sizes"]], fontsize=7)
    ax.set_xlabel("L2 strength lambda")
    ax.set_ylabel("hidden units")
    ax.set_title(title, fontsize=8)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    run = cli.start(
        NAME,
        __doc__ or NAME,
        argv,
        epochs="300 (spiral) / 20 (MNIST)",
        lr=0.1,
        batch_size="30 (spiral) / 100 (MNIST)",
    )
    quick, seed = run.quick, run.args.seed
    sp_grid = QUICK if quick else SPIRAL
    im_grid = {"sizes": (10, 100), "lambdas": (0.0, 1e-3)} if quick else IMAGES
    config: dict[str, Any] = {
        "quick": quick,
        "seed": seed,
        "objective": "mean cross-entropy + lambda * sum of squared weights (fnet.regularizers.l2)",
        "optimizer": f"SGD lr {run.hyper('lr', 0.1)}, momentum 0.9",
        "spiral": {
            **sp_grid,
            "model": "2-H-3, ReLU",
            "noise": "coordinates, 0.2",
            "n_train_per_class": 100,
            "n_val_per_class": 100 if quick else 300,
            "n_test_per_class": 100 if quick else 1000,
            "epochs": run.hyper("epochs", 30 if quick else 300),
            "batch_size": run.hyper("batch_size", 30),
            "seeds": 1 if quick else 2,
        },
        "images": {
            **im_grid,
            "model": "784-H-10, ReLU",
            "epochs": run.hyper("epochs", 2 if quick else 20),
            "batch_size": run.hyper("batch_size", 100),
            "validation": 1000,
            "seeds": 1,
        },
    }
    lr = run.hyper("lr", 0.1)
    sp = config["spiral"]
    # In --quick every split has the training set's shape: one compiled evaluation.
    n_val, n_test = (100, 100) if quick else (300, 1000)
    split = {
        name: load_spiral(n, seed=seed + off, noise=0.2, noise_on="coords")
        for name, n, off in (("train", 100, 0), ("val", n_val, 500), ("test", n_test, 1000))
    }
    run.used.append(
        spiral_info(
            100,
            0.2,
            "coords",
            f"training set (+ fresh {n_val}/class validation, {n_test}/class test)",
        )
    )
    results = {
        "spiral": grid_fit(
            "spiral",
            lambda h: models.mlp([h], 3, "relu"),
            split,
            sizes=sp["sizes"],
            lambdas=sp["lambdas"],
            seeds=[seed + s for s in range(sp["seeds"])],
            epochs=sp["epochs"],
            batch=sp["batch_size"],
            lr=lr,
            input_shape=(2,),
        )
    }
    im = config["images"]
    cut = {"max_train": 1000, "max_test": 500} if quick else {}
    data = run.image_data("mnist", **cut) or run.image_data("fashion_mnist", **cut)
    if data is not None:
        n_val = 500 if quick else im["validation"]
        im_split = {
            "train": (data.x_train[n_val:], data.y_train[n_val:]),
            "val": (data.x_train[:n_val], data.y_train[:n_val]),
            "test": (data.x_test, data.y_test),
        }
        im["data"] = (
            f"{data.info['dataset']}: {len(data.y_train) - n_val:,} train, {n_val:,} "
            f"validation (held out of the training set), {len(data.y_test):,} test"
        )
        results["images"] = grid_fit(
            data.name,
            lambda h: models.mlp([h], 10, "relu"),
            im_split,
            sizes=im["sizes"],
            lambdas=im["lambdas"],
            seeds=[seed],
            epochs=im["epochs"],
            batch=im["batch_size"],
            lr=lr,
            input_shape=(28, 28),
        )

    out = run.args.out
    figures = []
    res = results["spiral"]
    n_s, n_l = len(res["sizes"]), len(res["lambdas"])
    fig, axes = plt.subplots(
        n_s, n_l, figsize=(1.9 * n_l, 2.0 * n_s + 0.3), squeeze=False, layout="constrained"
    )
    acc = res["accuracy"]
    for i, size in enumerate(res["sizes"]):
        for j, lam in enumerate(res["lambdas"]):
            model, params = res["params"][(size, lam)]
            predict = jax.jit(model.apply)
            plot_decision_boundary(
                axes[i, j],
                lambda pts, f=predict, p=params: f(p, pts),
                *split["train"],
                extent=EXTENT,
                resolution=120,
                title=f"H={size}, lambda={lam:g}\ntest {acc['test'][i, j]:.1%}",
            )
    fig.suptitle(
        "coordinate-noise spiral (Bayes-optimal 73%): rows hidden units, columns L2", fontsize=9
    )
    figures.append(save_figure(fig, out, "capacity_boundaries.png"))

    fig, axes = plt.subplots(
        1, len(results), figsize=(4.8 * len(results), 3.4), squeeze=False, layout="constrained"
    )
    heatmap(axes[0, 0], results["spiral"], "spiral (coordinate noise 0.2): test accuracy")
    if "images" in results:
        heatmap(axes[0, 1], results["images"], f"{im['data'].split(':')[0]}: test accuracy")
    figures.append(save_figure(fig, out, "capacity_grid.png"))

    verdicts, parts, metrics_out, l2_helped = [], [], {}, []
    tables = []
    for task, res in results.items():
        c = compare(res)
        tol = 0.01 if task == "spiral" else 0.003
        a, b = c["largest_regularized"], c["size_only"]
        diff = a["test_accuracy"] - b["test_accuracy"]
        verdicts.append("better" if diff > tol else "tie" if diff >= -tol else "worse")
        # Did L2 itself help the largest net (beyond noise), or was there nothing to fix?
        l2_gain = a["test_accuracy"] - float(res["accuracy"]["test"][-1, 0])
        l2_helped.append(l2_gain > tol)
        label = "spiral" if task == "spiral" else im["data"].split(":")[0]
        parts.append(
            f"{label}: largest net (H={a['size']}) with the best lambda ({a['lambda']:g}) "
            f"{a['test_accuracy']:.1%} vs best size without L2 (H={b['size']}) "
            f"{b['test_accuracy']:.1%} test accuracy; best overall H={c['best_overall']['size']}"
            f", lambda={c['best_overall']['lambda']:g}: {c['best_overall']['test_accuracy']:.1%}"
        )
        metrics_out[task] = {
            "sizes": res["sizes"],
            "lambdas": res["lambdas"],
            "accuracy": {k: v.tolist() for k, v in res["accuracy"].items()},
            "choices": c,
        }
        header = "| hidden units | " + " | ".join(f"lambda {v:g}" for v in res["lambdas"]) + " |"
        lines = [header, "| ---: |" + " ---: |" * len(res["lambdas"])]
        for i, size in enumerate(res["sizes"]):
            lines.append(
                f"| {size} | " + " | ".join(f"{v:.1%}" for v in res["accuracy"]["test"][i]) + " |"
            )
        tables.append(
            {"title": f"Test accuracy, hidden units x L2 strength: {label}", "lines": lines}
        )
    if all(v == "better" for v in verdicts):
        verdict = "reproduced: the largest net with tuned L2 beats the best-sized unregularized net"
    elif all(v in ("better", "tie") for v in verdicts) and any(l2_helped):
        verdict = (
            "reproduced: the largest net with tuned L2 is as good as or better than the "
            "best-sized unregularized net (within noise where it ties), and needs no "
            "size search"
        )
    elif all(v in ("better", "tie") for v in verdicts):
        verdict = (
            "partly: shrinking the net never helped (the largest net with tuned L2 is as good "
            "as the best-sized one, within noise), but L2 added nothing beyond noise either: "
            "at this budget the big nets did not overfit, so 'stronger regularization' was "
            "not put to the test"
        )
    elif any(v in ("better", "tie") for v in verdicts):
        verdict = "partly: holds on one task, not on the other (see the grid)"
    else:
        verdict = "not reproduced: choosing the size did better than L2 on the largest net"
    claims = [
        claim_row(
            "size_not_regularizer",
            "; ".join(parts),
            verdict,
            setting="spiral (coordinate noise 0.2, 100/class, 2-H-3 ReLU)"
            + (f" and {im['data']} (784-H-10 ReLU)" if "images" in results else "")
            + "; choices on validation, accuracy on test",
        )
    ]
    return run.write(
        config,
        metrics_out,
        claims=claims,
        headline=[f"capacity: {p}" for p in parts],
        figures=figures,
        tables=tables,
    )


if __name__ == "__main__":
    cli.main(main)
