"""Shared plumbing of the experiment scripts: arguments, data, metrics.json, plotting.

Every experiment is a module ``experiments.<name>`` with ``main(argv) -> dict`` (the
metrics it wrote) and the common options built by :func:`make_parser`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures are written to files only

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import fnet
from fnet import datasets
from fnet.errors import DataError, DownloadError

__all__ = [
    "REPO_ROOT",
    "DataUnavailable",
    "MnistData",
    "Timer",
    "boundary_length",
    "default_data_dir",
    "device_description",
    "load_mnist",
    "load_spiral",
    "make_parser",
    "plot_decision_boundary",
    "predict_grid",
    "save_figure",
    "write_metrics",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIG_DPI = 90


class DataUnavailable(RuntimeError):
    """The data an experiment (or a part of it) needs is not on this machine."""


def default_data_dir() -> str | None:
    """``$FNET_DATA_DIR``, else ``../shared/data/mnist`` beside the repository if it
    exists, else ``None`` (fnet's own cache, ``~/.cache/fnet``)."""
    env = os.environ.get(datasets.ENV_VAR)
    if env:
        return env
    shared = REPO_ROOT.parent / "shared" / "data" / "mnist"
    return str(shared) if shared.is_dir() else None


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every experiment has: ``--quick``, ``--data-dir``, ``--out``,
    ``--seed``, ``--download``. ``description``: the module docstring (its first
    paragraph is shown by ``--help``) or one line."""
    first = " ".join(description.strip().split("\n\n")[0].split())
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=first,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (well under a minute on 2 CPU cores): tiny data and few steps; "
        "numbers are not meaningful",
    )
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="folder with the MNIST files (and cifar10/ beside or inside it); default "
        "$FNET_DATA_DIR, else ../shared/data/mnist beside the repository",
    )
    parser.add_argument("--out", default=f"runs/{name}", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")
    parser.add_argument(
        "--download",
        action="store_true",
        help="download missing official datasets (verified by SHA-256) before falling back",
    )
    return parser


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class MnistData:
    """MNIST as float32 pixels in [0, 1] (``/255``, as SEEDS §6 says) and int32 labels.

    ``x_*``: ``(N, 28, 28)`` float32; ``y_*``: ``(N,)`` int32. ``info`` says which files
    were used and whether the training set is the full official one.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any]

    @property
    def full(self) -> bool:
        """True when training on the complete official 60,000-image training set."""
        return not self.info["train_subset"]


def load_mnist(
    data_dir: str | None,
    *,
    seed: int,
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> MnistData:
    """MNIST through :mod:`fnet.datasets`: the official 60k training set if present
    (else the 5,000-image subset, shuffled, with a note), the official 10k test set.

    ``max_train``/``max_test`` cut the data for ``--quick`` runs (stratification is not
    needed: the training data are shuffled first, the test set is in random order).

    Raises:
      DataUnavailable: neither training set, or no test set, is available.
    """
    try:
        train = datasets.mnist_train_or_subset(data_dir, download=download)
        test = datasets.mnist("test", data_dir, download=download)
    except (DownloadError, DataError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = data_dir or "~/.cache/fnet"
        raise DataUnavailable(f"MNIST not available in {where}: {first}") from None
    train = datasets.shuffle(train, key=jax.random.key(10_000 + seed))
    subset = bool(train.info["subset"])
    x_tr, y_tr = train.inputs, train.labels
    x_te, y_te = test.inputs, test.labels
    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    note = (
        "official 60,000-image training set"
        if not subset
        else "the full 60,000-image training set is not available here; using the "
        "5,000-image subset of it (500 per class, shuffled)"
    )
    info = {
        "dataset": "MNIST",
        "train_examples": len(y_tr),
        "test_examples": len(y_te),
        "train_subset": subset,
        "train_files": list(train.info["files"]),
        "test_files": list(test.info["files"]),
        "test_verified": bool(test.info["verified"]),
        "note": note
        + f"; official 10,000-image test set{' (cut for --quick)' * (max_test is not None)}",
        "preprocessing": "pixels / 255 (fnet.datasets.scale_pixels), no mean subtraction",
    }
    return MnistData(
        datasets.scale_pixels(x_tr),
        y_tr.astype(np.int32),
        datasets.scale_pixels(x_te),
        y_te.astype(np.int32),
        info,
    )


def load_spiral(
    n_per_class: int, *, seed: int, noise: float = 0.2, noise_on: str = "angle"
) -> tuple[np.ndarray, np.ndarray]:
    """The SEEDS §1 spiral (3 classes) from :func:`fnet.datasets.spiral`: ``(x, y)`` with
    ``x`` ``(3N, 2)`` float32 and ``y`` ``(3N,)`` int32, shuffled."""
    ds = datasets.spiral(n_per_class, 3, noise, key=jax.random.key(seed), noise_on=noise_on)
    ds = datasets.shuffle(ds, key=jax.random.fold_in(jax.random.key(seed), 1))
    return ds.inputs, ds.labels


def spiral_info(n_per_class: int, noise: float, noise_on: str, what: str) -> dict[str, Any]:
    """A ``data`` entry describing a spiral dataset for ``metrics.json``."""
    return {
        "dataset": "spiral",
        "what": what,
        "n_per_class": n_per_class,
        "classes": 3,
        "noise": noise,
        "noise_on": noise_on,
        "note": "generated by fnet.datasets.spiral (SEEDS §1 formula)",
    }


# --------------------------------------------------------------------------- metrics


def device_description() -> str:
    """E.g. ``"cpu (2 cores): x86_64"``: the JAX backend and the host."""
    dev = jax.devices()[0]
    cores = os.cpu_count()
    kind = getattr(dev, "device_kind", dev.platform)
    return f"{dev.platform} ({kind}; {cores} host cores; {platform.machine()})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, jax.Array)):
        value = np.asarray(value)
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def write_metrics(
    out: str | os.PathLike[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_info: dict[str, Any],
    wall_time: float,
    *,
    name: str,
    claims: Sequence[dict[str, Any]] = (),
    headline: Sequence[str] = (),
    figures: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``<out>/metrics.json`` and return what was written.

    Adds fnet's and JAX's versions, the device, the time and the quick flag. ``data_info``
    has ``used`` (list of dataset descriptions) and ``skipped`` (list of
    ``{what, why}``). ``claims`` are rows from :func:`experiments.claims.claim_row`;
    ``headline`` a few one-line results for the runner's summary.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": name,
        "config": config,
        "metrics": metrics,
        "data": {
            "used": list(data_info.get("used", [])),
            "skipped": list(data_info.get("skipped", [])),
        },
        "claims": list(claims),
        "headline": list(headline),
        "figures": list(figures),
        "wall_time_s": round(float(wall_time), 2),
        "versions": {
            "fnet": fnet.__version__,
            "jax": jax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": device_description(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record = _jsonable(record)
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


class Timer:
    """Wall-clock seconds since construction: ``t = Timer(); ...; t()``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self._start


# --------------------------------------------------------------------------- plotting


def save_figure(fig: Any, out: str | os.PathLike[str], filename: str) -> str:
    """Save ``fig`` as a PNG in ``out`` (small: dpi 90), close it, return the file name."""
    path = pathlib.Path(out) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    return filename


def predict_grid(
    predict: Callable[[jax.Array], jax.Array],
    extent: tuple[float, float, float, float] = (-1.25, 1.25, -1.25, 1.25),
    resolution: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted classes on a ``resolution x resolution`` grid over ``extent``.

    ``predict(points (M, 2) float32) -> scores (M, C)``. Returns ``(xx, yy, classes)``,
    each ``(resolution, resolution)``.
    """
    x0, x1, y0, y1 = extent
    xs = np.linspace(x0, x1, resolution, dtype=np.float32)
    ys = np.linspace(y0, y1, resolution, dtype=np.float32)
    xx, yy = np.meshgrid(xs, ys)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    scores = np.asarray(predict(jnp.asarray(points)))
    return xx, yy, scores.argmax(axis=1).reshape(xx.shape)


def boundary_length(classes: np.ndarray, extent: tuple[float, float, float, float]) -> float:
    """Length of the decision boundary on a grid of predicted ``classes``, in data units.

    Counts horizontally and vertically adjacent grid cells with different classes and
    multiplies by the cell size: a jagged boundary is longer than a smooth one that
    separates the same regions.
    """
    rows, cols = classes.shape
    dx = (extent[1] - extent[0]) / (cols - 1)
    dy = (extent[3] - extent[2]) / (rows - 1)
    horizontal = np.count_nonzero(classes[:, 1:] != classes[:, :-1])
    vertical = np.count_nonzero(classes[1:, :] != classes[:-1, :])
    # A horizontal change is crossed by a boundary segment of height dy, and vice versa.
    return float(horizontal * dy + vertical * dx)


_CLASS_COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd")


def plot_decision_boundary(
    ax: Any,
    predict: Callable[[jax.Array], jax.Array],
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str = "",
    extent: tuple[float, float, float, float] = (-1.25, 1.25, -1.25, 1.25),
    resolution: int = 200,
) -> np.ndarray:
    """Shade the predicted class of a 2-D model over ``extent`` and scatter ``(x, y)``.

    Returns the grid of predicted classes (for :func:`boundary_length`).
    """
    from matplotlib.colors import ListedColormap

    xx, yy, classes = predict_grid(predict, extent, resolution)
    n_classes = int(max(classes.max(), y.max())) + 1
    cmap = ListedColormap(_CLASS_COLORS[:n_classes])
    ax.contourf(xx, yy, classes, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.3)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, s=8, edgecolors="k", linewidths=0.3)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return classes
