"""A small AlexNet-style convnet (conv-ReLU-pool x2, dense) vs the slides' MLP on MNIST:
test errors, parameter counts, time per epoch.

Both nets get the same data, loss (softmax cross-entropy), optimizer (plain SGD,
lr 0.1, batch 100) and number of epochs. The slides show AlexNet as the example of a
convolutional network but state no MNIST number for one, so there is no claim here:
the result is fnet's measurement.

Run: ``python -m experiments.convnet [--quick] [--data-dir DIR] [--out runs/convnet]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

import fnet
from experiments import common
from fnet import losses, models, train

NAME = "convnet"


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = common.make_parser(NAME, __doc__ or NAME).parse_args(argv)
    timer = common.Timer()
    quick = args.quick
    channels, hidden = ((4, 8), 16) if quick else ((16, 32), 64)
    config = {
        "quick": quick,
        "seed": args.seed,
        "convnet": f"fnet.models.convnet: [Conv3x3({channels[0]})-ReLU-MaxPool2] -> "
        f"[Conv3x3({channels[1]})-ReLU-MaxPool2] -> Dense({hidden})-ReLU -> Dense(10)",
        "mlp": "784-200-tanh-10 (fnet.models.mlp([200], 10, 'tanh'))",
        "optimizer": "plain SGD, lr 0.1, batch 100",
        "epochs": 1 if quick else 5,
    }
    out = args.out
    try:
        data = common.load_mnist(
            args.data_dir, seed=args.seed, download=args.download,
            max_train=500 if quick else None, max_test=500 if quick else None,
        )  # fmt: skip
    except common.DataUnavailable as err:
        print(f"[{NAME}] skipped: {err}")
        skipped = {"used": [], "skipped": [{"what": "MNIST", "why": str(err)}]}
        return common.write_metrics(out, config, {}, skipped, timer(), name=NAME)
    print(f"[{NAME}] data: {data.info['note']}")
    x_tr, x_te = data.x_train[..., None], data.x_test[..., None]  # NHWC, 1 channel
    nets = {
        "convnet": models.convnet(10, channels=channels, hidden=hidden),
        "mlp": models.mlp([200], 10, "tanh"),
    }
    results: dict[str, Any] = {}
    for name, model in nets.items():
        print(f"[{NAME}] training {name}")
        _, params = model.init(jax.random.key(args.seed), (-1, 28, 28, 1))
        fit = train.fit(
            train.supervised(model, losses.softmax_cross_entropy),
            params,
            optax.sgd(0.1),
            x_tr,
            data.y_train,
            key=jax.random.key(args.seed + 1),
            epochs=config["epochs"],
            batch_size=100,
            validation=(x_te, data.y_test),
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

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, r in results.items():
        curve = r["test_errors_per_epoch"]
        ax.plot(np.arange(1, len(curve) + 1), curve, "o-", label=f"{name} ({r['params']:,} params)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test errors (of {data.info['test_examples']:,})")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"MNIST, {data.info['train_examples']:,} training images", fontsize=9)
    figures = [common.save_figure(fig, out, "convnet_vs_mlp.png")]
    c, m = results["convnet"], results["mlp"]
    headline = [
        f"convnet: {c['test_errors']} vs MLP {m['test_errors']} test errors of "
        f"{data.info['test_examples']:,} after {config['epochs']} epochs on "
        f"{data.info['train_examples']:,} images; {c['params']:,} vs {m['params']:,} params; "
        f"{c['epoch_time_s']:.2f} s vs {m['epoch_time_s']:.2f} s per epoch"
    ]
    data_info = {"used": [data.info], "skipped": []}
    return common.write_metrics(
        out, config, results, data_info, timer(), name=NAME, headline=headline, figures=figures
    )


if __name__ == "__main__":
    main()
