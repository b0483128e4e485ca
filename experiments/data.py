"""The data of the experiments: MNIST, Fashion-MNIST and the spiral, and where to look.

Image data are read by fnet's verified loaders (:func:`fnet.datasets.mnist`,
:func:`fnet.datasets.mnist_train_or_subset`, :func:`fnet.datasets.fashion_mnist`, which
accept a copy of the official files by the SHA-256 of its decompressed content, so
Debian's re-compressed ``dataset-fashion-mnist`` passes) and looked for by fnet's one
search rule (:func:`fnet.datasets.candidate_dirs`):

- an explicit ``--data-dir D``: only ``D`` and its per-dataset subfolders (``D/mnist``,
  ``D/fashion_mnist``, ``D/fashion-mnist``). ``D`` must exist and hold at least one
  dataset (:func:`check_data_dir`), else :class:`DataDirError`: asking for a folder and
  silently running on nothing (or on data from elsewhere) would report success on it.
- no ``--data-dir``: fnet's default places (``$FNET_DATA_DIR``, the per-user cache
  ``~/.cache/fnet``, ``/usr/share/datasets``, each with or without the per-dataset
  subfolder), with the project machines' ``../shared/data`` beside the repository
  (:data:`SHARED_DATA`, which holds MNIST's test set and 5,000-image training subset)
  searched first for MNIST. A dataset found nowhere is :class:`DataUnavailable` and the
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
    "SHARED_DATA",
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
#: The project machines' data folder beside the repository: MNIST's official test files
#: and its 5,000-image training subset (``train5k-*``) in ``mnist/``.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

#: Image datasets the experiments use: key -> display name.
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _names(specs: Any) -> tuple[str, ...]:
    return tuple(spec.name for spec in specs)


# The file sets that make a dataset usable (a presence test by name; the loaders verify
# the content): MNIST's test files with its training files or the 5k subset.
_USABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "mnist": (
        _names(datasets.MNIST_FILES["test"]) + _names(datasets.MNIST_FILES["train"]),
        _names(datasets.MNIST_FILES["test"]) + tuple(datasets.MNIST_SUBSET_FILES),
    ),
    "fashion_mnist": (
        _names(datasets.FASHION_MNIST_FILES["test"])
        + _names(datasets.FASHION_MNIST_FILES["train"]),
    ),
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


def _default_root(dataset: str) -> pathlib.Path | None:
    """The ``data_dir`` passed to fnet's search when no ``--data-dir`` is given:
    :data:`SHARED_DATA` for MNIST (its 5k subset lives there), else none."""
    return SHARED_DATA if dataset == "mnist" else None


def search_dirs(dataset: str, data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    """Folders searched, in order, for ``dataset``'s files (``"mnist"``/``"fashion_mnist"``).

    With ``data_dir``: the folders of :func:`fnet.datasets.candidate_dirs` that belong to
    ``data_dir`` itself (its per-dataset subfolders, then itself). Without: all of
    ``candidate_dirs(dataset, SHARED_DATA)`` for MNIST, ``candidate_dirs(dataset)`` for
    Fashion-MNIST (module docstring).
    """
    if data_dir is None or str(data_dir) == "":
        return datasets.candidate_dirs(dataset, _default_root(dataset))
    root = pathlib.Path(data_dir).expanduser()
    return [d for d in datasets.candidate_dirs(dataset, root) if d == root or d.parent == root]


def _present(dataset: str, data_dir: str | os.PathLike[str] | None) -> bool:
    """Whether one of :func:`search_dirs` holds a usable file set of ``dataset`` (by name,
    through :func:`fnet.datasets.find_dataset_dir`)."""
    dirs = search_dirs(dataset, data_dir)
    root = data_dir if data_dir else _default_root(dataset)
    return any(
        datasets.find_dataset_dir(dataset, files, root) in dirs for files in _USABLE[dataset]
    )


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
    found = [name for name in DATASETS if _present(name, path)]
    if not found:
        raise DataDirError(
            f"--data-dir {data_dir}: holds no usable data: neither MNIST (t10k-*-ubyte.gz with "
            "train-* or train5k-*) nor Fashion-MNIST (t10k-* and train-*), directly or in "
            "mnist/, fashion_mnist/ or fashion-mnist/."
        )
    return found


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _read(
    dataset: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Train and test sets through fnet's verified loaders (MNIST: the official training
    set, else the 5k subset)."""
    if dataset == "mnist":
        train = datasets.mnist_train_or_subset(data_dir, download=download)
        return train, datasets.mnist("test", data_dir, download=download)
    return (
        datasets.fashion_mnist("train", data_dir, download=False),
        datasets.fashion_mnist("test", data_dir, download=False),
    )


def _load(
    dataset: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """:func:`_read` from the places of :func:`search_dirs`, or DataUnavailable listing
    them all and why the files there were not used."""
    dirs = search_dirs(dataset, data_dir)
    problems = []
    fetch = download and dataset == "mnist"
    if data_dir and not _present(dataset, data_dir) and not fetch:
        where = ", ".join(str(d) for d in dirs)
        raise DataUnavailable(f"{DATASETS[dataset]} not found in {where}")
    try:
        train, test = _read(dataset, data_dir or _default_root(dataset), False)
        used = {pathlib.Path(f).parent for ds in (train, test) for f in ds.info["files"]}
        if used <= set(dirs):
            return train, test
        problems.append(
            f"the usable files are outside --data-dir {data_dir} ({', '.join(map(str, used))}); "
            "its own copies are missing or not the official ones"
        )
    except (DownloadError, DataError, OSError) as err:
        problems.append(_first_line(err))
    if fetch:
        try:  # downloads go to --data-dir, else $FNET_DATA_DIR or ~/.cache/fnet
            return _read(dataset, data_dir, True)
        except (DownloadError, DataError, OSError) as err:
            problems.append(f"download: {_first_line(err)}")
    where = ", ".join(str(d) for d in dirs)
    raise DataUnavailable(f"{DATASETS[dataset]} not found in {where} ({'; '.join(problems)})")


def load_image_data(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    seed: int,
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> ImageData:
    """MNIST or Fashion-MNIST, shuffled, pixels ``/255``, verified by content.

    MNIST: the official 60k training set if present, else the 5,000-image subset (500
    per class), with the official 10k test set. Fashion-MNIST: 60k / 10k. Looked for in
    :func:`search_dirs`. The training set is shuffled with ``seed``;
    ``max_train``/``max_test`` cut it (and the test set) for ``--quick`` runs.

    Args:
      dataset: ``"mnist"`` or ``"fashion_mnist"``.
      data_dir: an explicit folder (searched alone) or ``None`` (the default places).
      seed: shuffling seed.
      download: MNIST only: download the official files if missing (into ``data_dir``,
        else ``$FNET_DATA_DIR`` or ``~/.cache/fnet``).
      max_train, max_test: keep only the first examples (after shuffling).

    Returns:
      :class:`ImageData`; ``info`` names the files, the sizes and the preprocessing.

    Raises:
      DataUnavailable: the dataset is in none of the folders, or the copies there are not
        the official files; the message lists every folder and what failed.
      ValueError: unknown ``dataset``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    train, test = _load(dataset, data_dir, download)
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
        "verified": (
            "training and test files verified by the SHA-256 of their content"
            if train.info["verified"]
            else "test files verified by content; the 5k subset read unverified"
        ),
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
