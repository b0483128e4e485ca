"""A small AlexNet-style convnet (conv-ReLU-pool x2, dense) vs the slides' MLP on MNIST
and Fashion-MNIST: test errors, parameter counts, time per epoch.

Both nets get the same data, loss (softmax cross-entropy), optimizer (plain SGD,
lr 0.1, batch 100) and number of epochs. The slides show AlexNet as the example of a
convolutional network but state no number for one, so there is no claim here: the
result is fnet's measurement. XLA:CPU runs these convolutions slowly (see
docs/performance.md), so the run is sized to minutes: 3 epochs on MNIST-5k, and 2
epochs on the first 5,000 (shuffled) of Fashion-MNIST's 60,000 training images, each
scored on the official 10,000 test images.

Run: ``python -m experiments.convnet [--quick] [--data-dir DIR] [--epochs N] [--lr LR]
[--batch-size B]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

import fnet
from experiments import cli
from experiments.data import ImageData
from experiments.plotting import save_figure
from fnet import losses, models, train

NAME = "convnet"
EPOCHS = {"mnist": 3, "fashion_mnist": 2}
TRAIN_CAP = {"mnist": None, "fashion_mnist": 5_000}


def train_both(
    data: ImageData,
    *,
    channels: tuple[int, int],
    hidden: int,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
) -> dict[str, Any]:
    """Train the convnet and the MLP on ``data``; test errors per epoch, params, times."""
    x_tr, x_te = data.x_train[..., None], data.x_test[..., None]  # NHWC, 1 channel
    nets = {
        "convnet": models.convnet(10, channels=channels, hidden=hidden),
        "mlp": models.mlp([200], 10, "tanh"),
    }
    results: dict[str, Any] = {}
    for name, model in nets.items():
        print(f"[{NAME}] {data.name}: training {name}", flush=True)
        _, params = model.init(jax.random.key(seed), (-1, 28, 28, 1))
        fit = train.fit(
            train.supervised(model, losses.softmax_cross_entropy),
            params,
            optax.sgd(lr),
            x_tr,
            data.y_train,
            key=jax.random.key(seed + 1),
            epochs=epochs,
            batch_size=batch,
            validation=(x_te, data.y_test),
            progress=False,
        )
        ev = train.evaluate(model, fit.params, x_te, data.y_test)
        results[name] = {
            "params": fnet.param_count(params),
            "test_errors": ev["error_count"],
            "test_accuracy": ev["accuracy"],
            "epoch_time_s": float(np.mean(fit.history["epoch_time"])),
            "compile_time_s": fit.history["compile_time"],
            "test_errors_per_epoch": [
                round((1 - a) * ev["n"]) for a in fit.history["val_accuracy"]
            ],
        }
    return results


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    run = cli.start(
        NAME, __doc__ or NAME, argv, epochs="3 (MNIST) / 2 (Fashion-MNIST)", lr=0.1, batch_size=100
    )
    quick, seed = run.quick, run.args.seed
    channels, hidden = ((4, 8), 16) if quick else ((16, 32), 64)
    epochs = run.hyper("epochs", None)
    config = {
        "quick": quick,
        "seed": seed,
        "convnet": f"fnet.models.convnet: [Conv3x3({channels[0]})-ReLU-MaxPool2] -> "
        f"[Conv3x3({channels[1]})-ReLU-MaxPool2] -> Dense({hidden})-ReLU -> Dense(10)",
        "mlp": "784-200-tanh-10 (fnet.models.mlp([200], 10, 'tanh'))",
        "optimizer": f"plain SGD, lr {run.hyper('lr', 0.1)}, batch {run.hyper('batch_size', 100)}",
        "epochs": {ds: epochs or (1 if quick else e) for ds, e in EPOCHS.items()},
        "train_cap": {ds: 500 if quick else c for ds, c in TRAIN_CAP.items()},
    }
    results: dict[str, Any] = {}
    infos: dict[str, Any] = {}
    for ds in EPOCHS:
        data = run.image_data(
            ds, max_train=config["train_cap"][ds], max_test=500 if quick else None
        )
        if data is None:
            continue
        infos[ds] = data.info
        results[ds] = train_both(
            data,
            channels=channels,
            hidden=hidden,
            epochs=config["epochs"][ds],
            lr=run.hyper("lr", 0.1),
            batch=run.hyper("batch_size", 100),
            seed=seed,
        )
    if not results:
        return run.write(config, {})

    fig, axes = plt.subplots(
        1, len(results), figsize=(4.8 * len(results), 3.3), squeeze=False, layout="constrained"
    )
    headline, lines = (
        [],
        [
            "| data | model | params | epochs | test errors | time per epoch |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ],
    )
    for ax, (ds, res) in zip(axes[0], results.items(), strict=True):
        info = infos[ds]
        n_epochs = config["epochs"][ds]
        width = 0.8 / len(res)
        for k, (name, r) in enumerate(res.items()):
            curve = r["test_errors_per_epoch"]
            label = f"{name} ({r['params']:,} params)"
            if n_epochs <= 2:  # too few points for a curve: one bar per epoch
                xs = np.arange(1, n_epochs + 1) + (k - (len(res) - 1) / 2) * width
                ax.bar(xs, curve, width, label=label)
                ax.set_xticks(np.arange(1, n_epochs + 1))
            else:
                ax.plot(np.arange(1, n_epochs + 1), curve, "o-", label=label)
            lines.append(
                f"| {info['dataset']} ({info['train_examples']:,} train) | {name} | "
                f"{r['params']:,} | {n_epochs} | "
                f"{r['test_errors']:,} of {info['test_examples']:,} | "
                f"{r['epoch_time_s']:.2f} s |"
            )
        ax.set_xticks(np.arange(1, n_epochs + 1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"test errors (of {info['test_examples']:,})")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.set_title(f"{info['dataset']}, {info['train_examples']:,} training images", fontsize=9)
        c, m = res["convnet"], res["mlp"]
        headline.append(
            f"convnet on {info['dataset']} ({info['train_examples']:,} train): {c['test_errors']} "
            f"vs MLP {m['test_errors']} test errors of {info['test_examples']:,} after {n_epochs} "
            f"epochs; {c['params']:,} vs {m['params']:,} params; {c['epoch_time_s']:.2f} s vs "
            f"{m['epoch_time_s']:.2f} s per epoch"
        )
    figures = [save_figure(fig, run.args.out, "convnet_vs_mlp.png")]
    tables = [{"title": "Convnet vs MLP", "lines": lines}]
    return run.write(config, results, headline=headline, figures=figures, tables=tables)


if __name__ == "__main__":
    cli.main(main)
