"""The slides' MNIST rule of thumb: Linear(784,10)+softmax (~750 test errors) and
784-200-tanh-10 (~250 test errors), trained as the exercise slides say.

Protocol (SEEDS §6): pixels / 255; init W ~ N(0, sqrt(2/(M+N))), b = 0 (fnet's Dense
default, ``glorot_normal``); softmax cross-entropy; plain SGD with learning rate 0.1 and
batch 100 (inside the slides' 0.1-0.01 and 100-1000); test errors on the official
10,000-image test set over 3 seeds (mean, min, max); learning curves. The four corners
of the slides' ranges (lr 0.1/0.01 x batch 100/1000) are run once each as well.

Uses the full 60,000-image training set when it is present and otherwise the
5,000-image subset, saying so; the protocol is the same either way.

Run: ``python -m experiments.mnist_classifiers [--quick] [--data-dir DIR] [--out DIR]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import common
from experiments.claims import claim_row
from fnet import losses, models, train

NAME = "mnist_classifiers"
SLIDES_ERRORS = {"linear": 750, "mlp": 250}
LABELS = {"linear": "Linear(784,10) + softmax", "mlp": "784-200-tanh-10"}


def make_models() -> dict[str, Any]:
    """The two models of the exercise slides (logits out; softmax is in the loss)."""
    return {"linear": models.linear(10), "mlp": models.mlp([200], 10, "tanh")}


def init_check(model: Any, data: common.MnistData) -> dict[str, Any]:
    """Measured std of each initial weight matrix vs sqrt(2/(M+N)); biases; pixel range."""
    _, params = model.init(jax.random.key(123), (-1, 28, 28))
    layers = {}
    for name, p in params.items():
        m, n = p["w"].shape
        layers[name] = {
            "shape": [m, n],
            "w_std": float(np.std(np.asarray(p["w"]))),
            "formula": math.sqrt(2.0 / (m + n)),
            "b_all_zero": bool(np.all(np.asarray(p["b"]) == 0)),
        }
    return {
        "layers": layers,
        "pixel_min": float(data.x_train.min()),
        "pixel_max": float(data.x_train.max()),
        "pixel_dtype": str(data.x_train.dtype),
    }


def verdict_for(kind: str, errors: list[int], full: bool, n_test: int) -> str:
    """Compare mean test errors with the slides' number (only meaningful on full data)."""
    target = SLIDES_ERRORS[kind]
    mean = float(np.mean(errors))
    if n_test != 10_000:
        return "not assessed (quick run on a cut test set)"
    if not full:
        return (
            f"not reproduced here: trained on the 5k-image subset (12x less data than the "
            f"slides' 60k), {mean / target:.1f}x the slides' errors; the same script runs "
            "the full protocol where the 60k set exists"
        )
    ratio = mean / target
    if 0.75 <= ratio <= 1.25:
        return "reproduced"
    if 0.5 <= ratio <= 1.5:
        return f"partly ({ratio:.2f}x the slides' number)"
    return f"not reproduced ({ratio:.2f}x the slides' number)"


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = common.make_parser(NAME, __doc__ or NAME).parse_args(argv)
    timer = common.Timer()
    quick = args.quick
    config: dict[str, Any] = {
        "quick": quick,
        "seed": args.seed,
        "models": LABELS,
        "loss": "softmax cross-entropy (fnet.losses.softmax_cross_entropy)",
        "optimizer": "plain SGD (optax.sgd)",
        "learning_rate": 0.1,
        "batch_size": 100,
        "epochs": 2 if quick else 100,
        "seeds": 1 if quick else 3,
        "init": "glorot_normal: W ~ N(0, sqrt(2/(M+N))), b = 0",
        "preprocessing": "pixels / 255",
        "grid": [] if quick else [[0.1, 100], [0.1, 1000], [0.01, 100], [0.01, 1000]],
    }
    out = args.out
    try:
        data = common.load_mnist(
            args.data_dir,
            seed=args.seed,
            download=args.download,
            max_train=1000 if quick else None,
            max_test=1000 if quick else None,
        )
    except common.DataUnavailable as err:
        print(f"[{NAME}] skipped: {err}")
        claims = [
            claim_row(c, "not run", f"not run ({err})")
            for c in ("mnist_linear_errors", "mnist_mlp_errors", "mnist_hyperparameters",
                      "mnist_init_scaling")
        ]  # fmt: skip
        data_info = {"used": [], "skipped": [{"what": "MNIST", "why": str(err)}]}
        return common.write_metrics(out, config, {}, data_info, timer(), name=NAME, claims=claims)
    print(f"[{NAME}] data: {data.info['note']}")
    config["train_examples"] = data.info["train_examples"]
    n_test = data.info["test_examples"]

    nets = make_models()
    loss_fn = losses.softmax_cross_entropy
    results: dict[str, Any] = {}
    curves: dict[str, list[list[float]]] = {}
    for kind, model in nets.items():
        objective = train.supervised(model, loss_fn)
        optimizer = optax.sgd(config["learning_rate"])
        errors, curve_runs, loss_runs, times = [], [], [], []
        for s in range(config["seeds"]):
            seed = args.seed + s
            print(f"[{NAME}] {LABELS[kind]}, seed {seed}")
            _, params = model.init(jax.random.key(seed), (-1, 28, 28))
            fit = train.fit(
                objective,
                params,
                optimizer,
                data.x_train,
                data.y_train,
                key=jax.random.key(seed + 100),
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                validation=(data.x_test, data.y_test),
            )
            ev = train.evaluate(model, fit.params, data.x_test, data.y_test)
            errors.append(int(ev["error_count"]))
            curve_runs.append([round((1 - a) * n_test) for a in fit.history["val_accuracy"]])
            loss_runs.append(fit.history["train_loss"])
            times.append(float(np.mean(fit.history["epoch_time"])))
        results[kind] = {
            "test_errors": errors,
            "test_errors_mean": float(np.mean(errors)),
            "test_errors_min": int(np.min(errors)),
            "test_errors_max": int(np.max(errors)),
            "test_error_rate_mean": float(np.mean(errors)) / n_test,
            "slides_errors": SLIDES_ERRORS[kind],
            "epoch_time_s": float(np.mean(times)),
            "test_errors_per_epoch": curve_runs,
            "train_loss_per_epoch": loss_runs,
        }
        curves[kind] = curve_runs

    grid: dict[str, dict[str, int]] = {}
    for kind, model in nets.items():
        objective = train.supervised(model, loss_fn)
        grid[kind] = {}
        for lr, batch in config["grid"]:
            if (lr, batch) == (config["learning_rate"], config["batch_size"]):
                grid[kind][f"lr={lr}, batch={batch}"] = results[kind]["test_errors"][0]
                continue
            print(f"[{NAME}] {LABELS[kind]}, lr {lr}, batch {batch}")
            _, params = model.init(jax.random.key(args.seed), (-1, 28, 28))
            fit = train.fit(
                objective, params, optax.sgd(lr), data.x_train, data.y_train,
                key=jax.random.key(args.seed + 100), epochs=config["epochs"], batch_size=batch,
            )  # fmt: skip
            ev = train.evaluate(model, fit.params, data.x_test, data.y_test)
            grid[kind][f"lr={lr}, batch={batch}"] = int(ev["error_count"])

    # Test errors vs training-set size (seed 0, same protocol): the trend behind the gap
    # between the 5k subset and the slides' 60k.
    sizes = [] if quick else [n for n in (1000, 2000) if n < len(data.y_train)]
    size_curve: dict[str, dict[int, int]] = {k: {} for k in nets}
    for kind, model in nets.items():
        objective = train.supervised(model, loss_fn)
        for n in sizes:
            print(f"[{NAME}] {LABELS[kind]}, first {n} training images")
            _, params = model.init(jax.random.key(args.seed), (-1, 28, 28))
            fit = train.fit(
                objective, params, optax.sgd(config["learning_rate"]), data.x_train[:n],
                data.y_train[:n], key=jax.random.key(args.seed + 100), epochs=config["epochs"],
                batch_size=config["batch_size"],
            )  # fmt: skip
            ev = train.evaluate(model, fit.params, data.x_test, data.y_test)
            size_curve[kind][n] = int(ev["error_count"])
        if sizes:
            size_curve[kind][len(data.y_train)] = results[kind]["test_errors"][0]
    extrapolated: dict[str, float] = {}
    for kind, curve in size_curve.items():
        if len(curve) >= 3:
            ns = np.log(np.asarray(list(curve), dtype=float))
            es = np.log(np.asarray(list(curve.values()), dtype=float))
            slope, icept = np.polyfit(ns, es, 1)
            extrapolated[kind] = float(np.exp(icept + slope * np.log(60_000)))

    # Learning curves: test errors per epoch (mean and range over seeds), training loss.
    fig, axes = plt.subplots(1, 3 if extrapolated else 2, figsize=(15 if extrapolated else 10, 3.4))
    for kind in nets:
        runs = np.asarray(curves[kind], dtype=float)
        epochs = np.arange(1, runs.shape[1] + 1)
        (line,) = axes[0].plot(epochs, runs.mean(0), label=LABELS[kind])
        axes[0].fill_between(epochs, runs.min(0), runs.max(0), alpha=0.2, color=line.get_color())
        axes[0].axhline(SLIDES_ERRORS[kind] * n_test / 10_000, ls=":", color=line.get_color())
        loss = np.asarray(results[kind]["train_loss_per_epoch"]).mean(0)
        axes[1].plot(epochs, loss, label=LABELS[kind])
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(f"test errors (of {n_test:,})")
    axes[0].set_title("dotted: the slides' numbers", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("training loss (epoch mean)")
    axes[1].set_yscale("log")
    if extrapolated:
        for kind, curve in size_curve.items():
            (line,) = axes[2].plot(list(curve), list(curve.values()), "o-", label=LABELS[kind])
            axes[2].plot([60_000], [SLIDES_ERRORS[kind]], "*", ms=10, color=line.get_color())
        axes[2].set_xscale("log")
        axes[2].set_yscale("log")
        axes[2].set_xlabel("training images (stars: the slides, 60k)")
        axes[2].set_ylabel("test errors (of 10,000)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"MNIST, {data.info['train_examples']:,} training images, SGD lr 0.1, batch 100",
        fontsize=9,
    )
    figures = [common.save_figure(fig, out, "mnist_learning_curves.png")]

    # Claims.
    claims = []
    for kind, cid in (("linear", "mnist_linear_errors"), ("mlp", "mnist_mlp_errors")):
        r = results[kind]
        claims.append(
            claim_row(
                cid,
                f"{r['test_errors_mean']:.0f} test errors of {n_test:,} "
                f"(min {r['test_errors_min']}, max {r['test_errors_max']}, "
                f"{config['seeds']} seeds; "
                f"{data.info['train_examples']:,} training images)",
                verdict_for(kind, r["test_errors"], data.full, n_test),
            )
        )
    ratio = results["linear"]["test_errors_mean"] / max(results["mlp"]["test_errors_mean"], 1)
    if grid.get("linear"):
        corner = "; ".join(
            f"{LABELS[k].split(' ')[0] if k == 'linear' else 'MLP'}: "
            + ", ".join(f"{s} -> {e}" for s, e in g.items())
            for k, g in grid.items()
        )
        spread = {k: max(g.values()) / max(min(g.values()), 1) for k, g in grid.items() if g}
        worst = max(spread.values())
        hp_verdict = (
            "reproduced (every corner trains; worst/best test errors "
            f"{worst:.1f}x within {config['epochs']} epochs)"
            if worst <= 1.5
            else f"partly: every corner trains, but with a fixed {config['epochs']} epochs the "
            f"slow corner (lr 0.01, batch 1000: 10x fewer steps, each 10x smaller) ends "
            f"{worst:.1f}x worse"
        )
        claims.append(claim_row("mnist_hyperparameters", corner + " test errors", hp_verdict))
    else:
        claims.append(
            claim_row(
                "mnist_hyperparameters",
                "lr 0.1, batch 100 used (grid skipped in --quick)",
                "not assessed (quick run)",
            )
        )
    init = {kind: init_check(model, data) for kind, model in nets.items()}
    stds = [
        f"{layer['shape'][0]}x{layer['shape'][1]}: std {layer['w_std']:.4f} vs "
        f"{layer['formula']:.4f}"
        for ic in init.values()
        for layer in ic["layers"].values()
    ]
    init_ok = all(
        abs(layer["w_std"] / layer["formula"] - 1) < 0.05 and layer["b_all_zero"]
        for ic in init.values()
        for layer in ic["layers"].values()
    ) and (0.0 <= data.x_train.min() and data.x_train.max() <= 1.0)
    claims.append(
        claim_row(
            "mnist_init_scaling",
            "used as stated: " + "; ".join(stds) + "; b = 0; pixels in "
            f"[{init['linear']['pixel_min']:g}, {init['linear']['pixel_max']:g}] float32",
            "reproduced (settings applied and verified)" if init_ok else "not reproduced",
        )
    )
    headline = [
        f"MNIST ({data.info['train_examples']:,} train): linear "
        f"{results['linear']['test_errors_mean']:.0f} vs MLP "
        f"{results['mlp']['test_errors_mean']:.0f} test errors of {n_test:,} "
        f"(slides: 750 vs 250 with 60k); ratio {ratio:.1f} (slides 3.0)"
    ]
    if extrapolated:
        headline.append(
            "MNIST test errors vs training-set size (seed 0): "
            + "; ".join(
                f"{LABELS[k]}: " + ", ".join(f"{n:,} -> {e}" for n, e in c.items())
                for k, c in size_curve.items()
            )
            + "; a log-log line through them reaches "
            + ", ".join(f"{LABELS[k]} ~{v:.0f}" for k, v in extrapolated.items())
            + " at 60k (rough extrapolation, not a measurement)"
        )
    metrics_out = {
        "results": results,
        "size_curve": size_curve,
        "extrapolated_errors_at_60k": extrapolated,
        "linear_over_mlp_errors": ratio,
        "hyperparameter_grid": grid,
        "init_check": init,
    }
    data_info = {"used": [data.info], "skipped": []}
    if not data.full:
        data_info["skipped"].append(
            {"what": "MNIST full 60k training set", "why": "not present on this machine"}
        )
    return common.write_metrics(
        out, config, metrics_out, data_info, timer(), name=NAME, claims=claims,
        headline=headline, figures=figures,
    )  # fmt: skip


if __name__ == "__main__":
    main()
