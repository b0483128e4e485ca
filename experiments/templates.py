"""A linear classifier's weight rows shown as images: one template per class (28x28 for
MNIST; 32x32x3 for CIFAR-10 when its data is present).

The check is quantitative too: each class's template is correlated with every class's
mean image minus the mean of all images; a template "looks like" its class when its own
class gives the highest correlation.

Run: ``python -m experiments.templates [--quick] [--data-dir DIR] [--out DIR]``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import cli, plotting, records
from experiments.claims import claim_row
from experiments.data import DataUnavailable, load_image_data, search_dirs
from fnet import datasets, losses, models, regularizers, train
from fnet.errors import DataError, DownloadError

NAME = "templates"
LAMBDA = 1e-3


def train_linear(x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int, lr: float) -> Any:
    """Softmax linear classifier with a little L2 (lambda = 1e-3): returns ``w`` (D, 10)."""
    model = models.linear(10)
    _, params = model.init(jax.random.key(seed), (-1, *x.shape[1:]))
    objective = train.supervised(
        model, losses.softmax_cross_entropy, penalty=lambda p: LAMBDA * regularizers.l2(p)
    )
    fit = train.fit(
        objective, params, optax.sgd(lr), x, y, key=jax.random.key(seed + 1), epochs=epochs,
        batch_size=100,
    )  # fmt: skip
    return np.asarray(fit.params["dense_0"]["w"]), fit.history


def template_match(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Correlation of each template (column of ``w``) with each centred class-mean image."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    overall = flat.mean(0)
    means = np.stack([flat[y == c].mean(0) - overall for c in range(w.shape[1])])  # (C, D)
    corr = np.corrcoef(np.concatenate([w.T, means]))[: w.shape[1], w.shape[1] :]  # (C, C)
    best = corr.argmax(axis=1)
    return {
        "correlation": corr,
        "own_class_best": int(np.sum(best == np.arange(w.shape[1]))),
        "mean_own_correlation": float(np.mean(np.diag(corr))),
    }


def _plot(w: np.ndarray, shape: tuple[int, ...], names: Sequence[str], title: str) -> Any:
    fig, axes = plt.subplots(1, w.shape[1], figsize=(1.3 * w.shape[1], 1.7))
    for c, ax in enumerate(axes):
        t = w[:, c].reshape(shape)
        if t.ndim == 3:  # RGB: rescale each template to [0, 1] for display
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-12)
            ax.imshow(t)
        else:
            lim = float(np.abs(t).max())
            ax.imshow(t, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(names[c], fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def _cifar(data_dir: str | None, download: bool) -> Any:
    """CIFAR-10 train/test (:func:`fnet.datasets.cifar10`, verified), looked for like the
    other datasets (:func:`experiments.data.search_dirs`): an explicit ``data_dir``
    alone, else fnet's default places. Raises DataUnavailable, naming every folder."""
    dirs = search_dirs("cifar10", data_dir)
    where = ", ".join(str(d) for d in dirs)
    archives = (datasets.CIFAR10_FILE, datasets.CIFAR10_PYTHON_FILE)  # fnet reads either
    names = " or ".join(f.name for f in archives)
    if data_dir and not download:  # an explicit folder without the archive: not read elsewhere
        if all(
            datasets.find_dataset_dir("cifar10", [f.name], data_dir) not in dirs for f in archives
        ):
            raise DataUnavailable(f"CIFAR-10 ({names}) not found in {where}")
    try:
        train = datasets.cifar10("train", data_dir, download=download)
        test = datasets.cifar10("test", data_dir, download=download)
    except DownloadError as err:
        raise DataUnavailable(
            f"CIFAR-10 ({names}) not found in {where}; pass --download to fetch "
            f"{datasets.CIFAR10_FILE.name}"
        ) from err
    except (DataError, OSError) as err:  # present but not the official archive
        raise DataUnavailable(f"CIFAR-10 not usable: {str(err).splitlines()[0]}") from err
    used = {pathlib.Path(f).parent for f in train.info["files"]}
    if not used <= set(dirs):
        raise DataUnavailable(
            f"CIFAR-10 ({names}) not found in {where} (a copy is in "
            f"{', '.join(map(str, used))}, outside --data-dir)"
        )
    return train, test


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    quick = args.quick
    config = {
        "quick": quick,
        "seed": args.seed,
        "model": "Linear(D,10) + softmax cross-entropy, L2 lambda 1e-3 (cleaner templates)",
        "optimizer": "plain SGD, batch 100",
        "mnist": {"lr": 0.1, "epochs": 2 if quick else 20},
        "cifar10": {"lr": 0.005, "epochs": 1 if quick else 10, "preprocessing": "/255, "
                    "minus the per-pixel training mean"},
    }  # fmt: skip
    out = args.out
    data_info: dict[str, list] = {"used": [], "skipped": []}
    figures: list[str] = []
    results: dict[str, Any] = {}
    claims = []

    try:
        data = load_image_data(
            "mnist",
            args.data_dir, seed=args.seed, download=args.download,
            max_train=1000 if quick else None, max_test=1000 if quick else None,
        )  # fmt: skip
        data_info["used"].append(data.info)
        print(f"[{NAME}] MNIST: {data.info['note']}")
        w, history = train_linear(
            data.x_train, data.y_train, seed=args.seed, epochs=config["mnist"]["epochs"],
            lr=config["mnist"]["lr"],
        )  # fmt: skip
        match = template_match(w, data.x_train, data.y_train)
        results["mnist"] = {**match, "final_train_accuracy": history["train_accuracy"][-1]}
        fig = _plot(w, (28, 28), [str(c) for c in range(10)], "MNIST: rows of W as 28x28 images")
        figures.append(plotting.save_figure(fig, out, "templates_mnist.png"))
        claims.append(
            claim_row(
                "templates",
                f"MNIST: each template correlates best with its own class's (centred) mean "
                f"image for {match['own_class_best']}/10 classes (mean r = "
                f"{match['mean_own_correlation']:.2f})",
                "reproduced" if match["own_class_best"] >= 9 else "partly",
            )
        )
    except DataUnavailable as err:
        data_info["skipped"].append({"what": "MNIST templates", "why": str(err)})
        claims.append(claim_row("templates", "not run", f"not run ({err})"))

    try:
        train_ds, test_ds = _cifar(args.data_dir, args.download)
        x = datasets.scale_pixels(train_ds.inputs)
        if quick:
            x, y = x[:2000], train_ds.labels[:2000]
        else:
            y = train_ds.labels
        mean = x.mean(axis=0, keepdims=True)
        x = (x - mean).astype(np.float32)
        data_info["used"].append(
            {"dataset": "CIFAR-10", "train_examples": len(y), "files": train_ds.info["files"]}
        )
        w, _ = train_linear(
            x, y, seed=args.seed, epochs=config["cifar10"]["epochs"], lr=config["cifar10"]["lr"]
        )
        match = template_match(w, x, y)
        results["cifar10"] = match
        fig = _plot(w, (32, 32, 3), datasets.CIFAR10_CLASSES, "CIFAR-10: rows of W as images")
        figures.append(plotting.save_figure(fig, out, "templates_cifar10.png"))
        del test_ds
    except DataUnavailable as err:
        print(f"[{NAME}] CIFAR-10 part skipped: {err}")
        data_info["skipped"].append({"what": "CIFAR-10 templates", "why": str(err)})

    headline = [
        f"templates: {name}: own class best-correlated for {r['own_class_best']}/10 templates"
        for name, r in results.items()
    ]
    return records.write_metrics(
        out, config, results, data_info, timer(), name=NAME, claims=claims, headline=headline,
        figures=figures,
    )  # fmt: skip


if __name__ == "__main__":
    cli.main(main)
