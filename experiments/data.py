"""The data of the experiments: MNIST, Fashion-MNIST and the spiral, and where to look.

Where image data are looked for:

- an explicit ``--data-dir D``: only ``D`` (and its per-dataset subfolders ``D/mnist``,
  ``D/fashion_mnist``, ``D/fashion-mnist``). ``D`` must exist and hold at least one
  dataset (:func:`check_data_dir`), else :class:`DataDirError`: asking for a folder and
  silently running on nothing would report success on nothing.
- no ``--data-dir``: ``$FNET_DATA_DIR``, ``../shared/data`` beside the repository, the
  per-user cache (``~/.cache/fnet``) and the system location ``/usr/share/datasets/<name>``
  (Debian's ``dataset-fashion-mnist`` package installs there), each with or without the
  per-dataset subfolder. A dataset found nowhere is :class:`DataUnavailable` and the
  experiment records it as skipped, with every place looked in.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import numpy as np

from fnet import datasets
from fnet.errors import DataError, DownloadError

__all__ = [
    "DATASETS",
    "REPO_ROOT",
    "DataDirError",
    "DataUnavailable",
    "ImageData",
    "check_data_dir",
    "load_image_data",
    "load_spiral",
    "search_dirs",
    "spiral_info",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Image datasets the experiments use: key -> display name.
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
_SUBFOLDERS = {"mnist": ("mnist",), "fashion_mnist": ("fashion_mnist", "fashion-mnist")}
_SYSTEM = {
    "mnist": "/usr/share/datasets/mnist",
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
}
_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
# Fashion-MNIST's first ten labels (train, test): tells it apart from MNIST, whose
# files have the same names and sizes (MNIST's begin 5 0 4 1 9 2 1 3 1 4 / 7 2 1 0 4 1 4 9 5 9).
_FASHION_FIRST_LABELS = {
    "train": (9, 0, 0, 3, 0, 2, 7, 2, 5, 5),
    "test": (9, 2, 1, 1, 6, 1, 4, 6, 5, 7),
}


class DataUnavailable(RuntimeError):
    """The data an experiment (or a part of it) needs is not on this machine."""


class DataDirError(ValueError):
    """An explicit ``--data-dir`` does not exist or holds none of the datasets."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A 28x28 image dataset as float32 pixels in [0, 1] (``/255``) and int32 labels.

    ``x_*``: ``(N, 28, 28)`` float32; ``y_*``: ``(N,)`` int32. ``info`` says which
    dataset and files were used, how many examples, and whether the training set is the
    complete official one (``train_subset``).
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

    @property
    def name(self) -> str:
        """Display name with the training-set size, e.g. ``"MNIST-5k"``."""
        return f"{self.info['dataset']}-{self.info['train_examples'] / 1000:g}k"


def _roots() -> list[pathlib.Path]:
    """The default data roots, in order (see the module docstring)."""
    roots = []
    env = os.environ.get(datasets.ENV_VAR)
    if env:
        roots.append(pathlib.Path(env).expanduser())
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        roots.append(shared)
    if not env:
        roots.append(datasets.resolve_data_dir(None))
    return roots


def search_dirs(dataset: str, data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    """Folders searched, in order, for ``dataset``'s files (``"mnist"``/``"fashion_mnist"``).

    With ``data_dir`` only that folder and its per-dataset subfolders; else the default
    roots (module docstring) and the system location ``/usr/share/datasets/<name>``.
    """
    roots = [pathlib.Path(data_dir).expanduser()] if data_dir else _roots()
    dirs = [root / sub for root in roots for sub in _SUBFOLDERS[dataset]] + roots
    if not data_dir:
        dirs.append(pathlib.Path(_SYSTEM[dataset]))
    return list(dict.fromkeys(dirs))


def _has_files(folder: pathlib.Path, dataset: str) -> bool:
    if not all((folder / f).is_file() for f in _TEST_FILES):
        return False
    train = (*_TRAIN_FILES,) if dataset == "fashion_mnist" else None
    if train is None:  # MNIST: the official training files or the 5k subset
        return all((folder / f).is_file() for f in _TRAIN_FILES) or all(
            (folder / f).is_file() for f in datasets.MNIST_SUBSET_FILES
        )
    return all((folder / f).is_file() for f in train)


def check_data_dir(data_dir: str | os.PathLike[str]) -> list[str]:
    """The datasets (keys of :data:`DATASETS`) whose files an explicit ``data_dir`` holds.

    Raises:
      DataDirError: ``data_dir`` is not an existing folder, or holds the files of none of
        the datasets (MNIST: ``t10k-*`` and ``train-*`` or ``train5k-*``; Fashion-MNIST:
        ``t10k-*`` and ``train-*``, directly or in a per-dataset subfolder).
    """
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataDirError(
            f"--data-dir {data_dir}: no such folder. Give a folder holding MNIST or "
            "Fashion-MNIST (the *-ubyte.gz files, directly or in mnist/, fashion_mnist/ "
            "or fashion-mnist/), or leave --data-dir out to search the default places."
        )
    found = [name for name in DATASETS if any(_has_files(d, name) for d in search_dirs(name, path))]
    if not found:
        raise DataDirError(
            f"--data-dir {data_dir}: holds no usable data: neither MNIST (t10k-*-ubyte.gz with "
            "train-* or train5k-*) nor Fashion-MNIST (t10k-* and train-*), directly or in "
            "mnist/, fashion_mnist/ or fashion-mnist/."
        )
    return found


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _mnist_from(folder: pathlib.Path, download: bool) -> tuple[Any, Any]:
    train = datasets.mnist_train_or_subset(folder, download=download)
    test = datasets.mnist("test", folder, download=download)
    return train, test


def read_fashion_mnist(folder: pathlib.Path, split: str) -> datasets.Dataset:
    """Fashion-MNIST's ``split`` from the four official file names in ``folder``.

    The one place to change when ``fnet.datasets.fashion_mnist`` accepts re-compressed
    copies of the official files (Debian's): it rejects them today, because it checks the
    archive's SHA-256 and Debian's gzip header differs. Until then the files are read
    with :func:`fnet.datasets.load_mnist_format` (fully parsed, not checksummed) and
    checked here: 60,000 / 10,000 images, 10 balanced classes, and the official first
    ten labels (which also tells Fashion-MNIST from MNIST, whose file names are the same).

    Raises:
      DataError: the files are not Fashion-MNIST's ``split``.
    """
    prefix = "train" if split == "train" else "t10k"
    ds = datasets.load_mnist_format(
        folder / f"{prefix}-images-idx3-ubyte.gz",
        folder / f"{prefix}-labels-idx1-ubyte.gz",
        name="fashion_mnist",
        split=split,
    )
    n = 60_000 if split == "train" else 10_000
    counts = np.bincount(ds.labels, minlength=10)
    first = tuple(int(v) for v in ds.labels[:10])
    if len(ds.labels) != n or counts.min() != counts.max() or first != _FASHION_FIRST_LABELS[split]:
        raise DataError(
            f"{folder}: {prefix}-*-ubyte.gz are not Fashion-MNIST's {split} set "
            f"({len(ds.labels)} examples, first labels {first}; expected {n:,}, "
            f"{_FASHION_FIRST_LABELS[split]})"
        )
    ds.info["subset"] = False
    ds.info["verified"] = "counts, class balance and first labels (archive checksum not checked)"
    return ds


def _fashion_from(folder: pathlib.Path, download: bool) -> tuple[Any, Any]:
    del download  # Fashion-MNIST is read from the files present only (see read_fashion_mnist)
    if not _has_files(folder, "fashion_mnist"):
        raise DownloadError(f"{folder}: no Fashion-MNIST files")
    return read_fashion_mnist(folder, "train"), read_fashion_mnist(folder, "test")


def load_image_data(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    seed: int,
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> ImageData:
    """MNIST or Fashion-MNIST, shuffled, pixels ``/255``, from the first folder that has it.

    MNIST: the official 60k training set if present, else the 5,000-image subset (500
    per class), with the official 10k test set. Fashion-MNIST: 60k / 10k. The training
    set is shuffled with ``seed``; ``max_train``/``max_test`` cut it (and the test set)
    for ``--quick`` runs.

    Args:
      dataset: ``"mnist"`` or ``"fashion_mnist"``.
      data_dir: an explicit folder (searched alone) or ``None`` (the default places).
      seed: shuffling seed.
      download: MNIST only: download the official files if missing.
      max_train, max_test: keep only the first examples (after shuffling).

    Returns:
      :class:`ImageData`; ``info`` names the files, the sizes and the preprocessing.

    Raises:
      DataUnavailable: the dataset is in none of the folders; the message lists them and
        why each failed (missing, or present but not the official files).
      ValueError: unknown ``dataset``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    reader = _mnist_from if dataset == "mnist" else _fashion_from
    problems = []
    train = test = None
    for folder in search_dirs(dataset, data_dir):
        if not _has_files(folder, dataset):
            continue
        try:
            train, test = reader(folder, False)
            break
        except (DownloadError, DataError, OSError) as err:
            problems.append(f"{folder}: {_first_line(err)}")
    if train is None and download and dataset == "mnist":
        try:
            train, test = _mnist_from(pathlib.Path(datasets.resolve_data_dir(data_dir)), True)
        except (DownloadError, DataError, OSError) as err:
            problems.append(f"download: {_first_line(err)}")
    if train is None or test is None:
        where = ", ".join(str(d) for d in search_dirs(dataset, data_dir))
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise DataUnavailable(f"{DATASETS[dataset]} not found in {where}{detail}")
    train = datasets.shuffle(train, key=jax.random.key(10_000 + seed))
    subset = bool(train.info["subset"])
    x_tr, y_tr = train.inputs, train.labels
    x_te, y_te = test.inputs, test.labels
    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    name = DATASETS[dataset]
    if dataset == "mnist" and subset:
        what = "5,000-image subset of the official training set (500 per class, shuffled)"
    else:
        what = f"official {len(train.labels):,}-image training set"
    note = (
        f"{name}: {what}"
        + (f" (first {len(y_tr):,} after shuffling)" if max_train is not None else "")
        + f"; official {len(test.labels):,}-image test set"
        + (f" (its first {len(y_te):,})" if max_test is not None else "")
    )
    info = {
        "dataset": name,
        "train_examples": len(y_tr),
        "test_examples": len(y_te),
        "train_subset": subset,
        "train_files": list(train.info["files"]),
        "test_files": list(test.info["files"]),
        "verified": train.info["verified"],
        "note": note,
        "preprocessing": "pixels / 255 (fnet.datasets.scale_pixels), no mean subtraction",
    }
    return ImageData(
        datasets.scale_pixels(x_tr),
        y_tr.astype(np.int32),
        datasets.scale_pixels(x_te),
        y_te.astype(np.int32),
        info,
    )


def load_spiral(
    n_per_class: int, *, seed: int, noise: float = 0.2, noise_on: str = "angle"
) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's 3-class spiral from :func:`fnet.datasets.spiral`, shuffled:
    ``x`` ``(3N, 2)`` float32 and ``y`` ``(3N,)`` int32."""
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
        "note": "generated by fnet.datasets.spiral (the lecture's spiral formula)",
    }
