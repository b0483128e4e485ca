"""MNIST and Fashion-MNIST from the official gzipped IDX files, plus an opt-in loader
for MNIST-format files that are not the official ones (subsets, your own data).

Shapes and dtypes: images ``(N, 28, 28)`` ``uint8`` in ``[0, 255]`` (no channel axis;
add one with ``x[..., None]``), labels ``(N,)`` ``int32`` in ``[0, 10)``.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from fnet.datasets.cache import candidate_dirs
from fnet.datasets.dataset import Dataset
from fnet.datasets.download import DEFAULT_TIMEOUT, FileSpec, ensure_files
from fnet.datasets.idx import MAX_IDX_BYTES, read_idx, read_idx_verbose
from fnet.errors import DataError, DownloadError, LabelError
from fnet.validation import check_labels

__all__ = [
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SUBSET_FILES",
    "fashion_mnist",
    "load_mnist_format",
    "mnist",
    "mnist_train_or_subset",
]

PathLike = str | os.PathLike[str]

#: Base URLs tried in order. ossci-datasets is torchvision's mirror, cvdf-datasets
#: TensorFlow's; yann.lecun.com is the original page (often refuses downloads now).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: (images, labels) per split. Archive sizes and SHA-256 as recorded by TensorFlow
#: Datasets' url_checksums; MD5 as published by torchvision / the dataset pages. The
#: raw (decompressed) SHA-256: MNIST t10k and all of Fashion-MNIST computed here from
#: official copies (../shared/data/mnist, Debian's dataset-fashion-mnist); MNIST train
#: as published by several independent projects whose lists give the same t10k and
#: Fashion-MNIST digests as computed here.
MNIST_FILES: dict[str, tuple[FileSpec, FileSpec]] = {
    "train": (
        FileSpec(
            "train-images-idx3-ubyte.gz",
            9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            47040016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        FileSpec(
            "train-labels-idx1-ubyte.gz",
            28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "d53e105ee54ea40749a09fcbcd1e9432",
            60008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
    ),
    "test": (
        FileSpec(
            "t10k-images-idx3-ubyte.gz",
            1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "9fb629c4189551a2d022fa330f9573f3",
            7840016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte.gz",
            4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ec29112dd5afa0611ce80d1b7f02629c",
            10008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
}
FASHION_MNIST_FILES: dict[str, tuple[FileSpec, FileSpec]] = {
    "train": (
        FileSpec(
            "train-images-idx3-ubyte.gz",
            26421880,
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            47040016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        FileSpec(
            "train-labels-idx1-ubyte.gz",
            29515,
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "25c81989df183df01b3e8a0aad5dffbe",
            60008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
    ),
    "test": (
        FileSpec(
            "t10k-images-idx3-ubyte.gz",
            4422102,
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "bef4ecab320f06d8554ea6380940ec79",
            7840016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte.gz",
            5148,
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "bb300cfdad3c16e7a12a480ee83cd310",
            10008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}
#: Names of the 5,000-image training subset (500 per class, sorted by class) that
#: :func:`mnist_train_or_subset` falls back to. Not official files: not verified.
MNIST_SUBSET_FILES: tuple[str, str] = (
    "train5k-images-idx3-ubyte.gz",
    "train5k-labels-idx1-ubyte.gz",
)

_MNIST_CLASSES = tuple(str(d) for d in range(10))
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_UNOFFICIAL_HINT = (
    " For MNIST-format files that are not the official ones (subsets, your own data), "
    "use fnet.datasets.load_mnist_format(images_path, labels_path), which skips the "
    "checksum."
)


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _read_official(path: pathlib.Path, spec: FileSpec, *, fix: str = "") -> np.ndarray:
    """Read an IDX file and check that its decompressed content is the official one.

    Reading stops as soon as the file declares or holds more than the official size.
    """
    if spec.raw_size is None or spec.raw_sha256 is None:
        raise ValueError(f"{spec.name}: no content digest recorded")
    header = 16 if "-images-" in spec.name else 8
    try:
        got = read_idx_verbose(path, max_bytes=spec.raw_size - header)
    except DataError as e:
        raise DataError(
            f"{path} is not the official {spec.name}: {e} Delete it so that fnet can "
            f"download it again, or replace it with the official file.{fix}"
        ) from e
    if got.raw_bytes != spec.raw_size or got.raw_sha256 != spec.raw_sha256:
        raise DataError(
            f"{path}: content verification failed: the decompressed file is "
            f"{got.raw_bytes} bytes with SHA-256 {got.raw_sha256}; the official "
            f"{spec.name} decompresses to {spec.raw_size} bytes with SHA-256 "
            f"{spec.raw_sha256}. The file is corrupt or is not the official one. Delete "
            f"it so that fnet can download it again, or replace it with the official "
            f"file.{fix}"
        )
    return got.array


def _read_pair(
    images_path: pathlib.Path,
    labels_path: pathlib.Path,
    *,
    n_classes: int,
    image_shape: tuple[int, ...] | None,
    max_images: int = MAX_IDX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images/labels pair of IDX files."""
    images = read_idx(images_path, max_bytes=max_images)
    labels = read_idx(labels_path, max_bytes=max(1, max_images // 16))
    return _check_pair(images, labels, images_path, labels_path, n_classes, image_shape)


def _check_pair(
    images: np.ndarray,
    labels: np.ndarray,
    images_path: pathlib.Path,
    labels_path: pathlib.Path,
    n_classes: int,
    image_shape: tuple[int, ...] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-check an images/labels pair read from IDX files."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected MNIST-format images, a 3-D uint8 IDX array "
            f"(N, rows, cols), got {images.ndim}-D {images.dtype} of shape {images.shape}. "
            "Check that this is an images file (…-images-idx3-ubyte) and not a labels file."
        )
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{'x'.join(map(str, image_shape))}. Pass image_shape=None to accept any size."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected MNIST-format labels, a 1-D uint8 IDX array (N,), got "
            f"{labels.ndim}-D {labels.dtype} of shape {labels.shape}. Check that this is a "
            "labels file (…-labels-idx1-ubyte) and not an images file."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels. The two files must come from the same split and the same "
            "subset; replace the one that does not belong."
        )
    try:
        labels = check_labels(labels, n_classes, name=f"labels in {labels_path}")
    except LabelError as e:
        raise DataError(f"{labels_path}: {e}") from e
    return images, labels


_ABOUT = {
    "mnist": {
        "homepage": "http://yann.lecun.com/exdb/mnist/",
        "license": "CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J.C. Burges)",
    },
    "fashion_mnist": {
        "homepage": "https://github.com/zalandoresearch/fashion-mnist",
        "license": "MIT (Zalando SE)",
    },
}


def _official(
    name: str,
    table: dict[str, tuple[FileSpec, FileSpec]],
    mirrors: Sequence[str],
    class_names: tuple[str, ...],
    split: str,
    data_dir: PathLike | None,
    download: bool,
) -> Dataset:
    _check_split(split)
    specs = table[split]
    (images_path, images), (labels_path, labels) = ensure_files(
        name,
        specs,
        data_dir=data_dir,
        download=download,
        mirrors=mirrors,
        timeout=DEFAULT_TIMEOUT,
        fix=_UNOFFICIAL_HINT,
        read=lambda path, spec, fix: (path, _read_official(path, spec, fix=fix)),
        others="*-ubyte*",
    )
    images, labels = _check_pair(images, labels, images_path, labels_path, 10, (28, 28))
    info = {
        "name": name,
        "split": split,
        "n_classes": 10,
        "class_names": class_names,
        "files": [str(images_path), str(labels_path)],
        "verified": True,
        "subset": False,
        **_ABOUT[name],
    }
    return Dataset(images, labels, info)


def mnist(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
) -> Dataset:
    """The official MNIST digits, verified by content.

    Files are looked for in :func:`fnet.datasets.candidate_dirs` order: ``data_dir``,
    ``$FNET_DATA_DIR``, the per-user cache (``~/.cache/fnet``), ``/usr/share/datasets``,
    each in its ``mnist/`` subfolder or directly, gzipped or not. A copy is accepted when
    its decompressed bytes have the official size and SHA-256 (a re-compressed copy
    passes, one changed byte does not); reading stops once a file exceeds the official
    size. Missing files are downloaded into ``<data_dir or $FNET_DATA_DIR or
    ~/.cache/fnet>/mnist/`` when ``download`` is true, verified by the archive's
    published size and SHA-256.

    Args:
      split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
      data_dir: root data folder (see above).
      download: fetch missing files from ``mirrors`` (in order).
      mirrors: base URLs of the files.

    Returns:
      ``Dataset(inputs, labels, info)``: inputs ``(N, 28, 28)`` ``uint8``, labels
      ``(N,)`` ``int32`` in ``[0, 10)``, ``info["verified"] = True``.

    Raises:
      DataError: a file is present but corrupt or not the official one (and no other
        copy is); the message names each copy and what differs.
      DownloadError: files missing and not downloadable; lists every folder searched,
        files there that are not the official ones, and where to put them.
    """
    return _official("mnist", MNIST_FILES, mirrors, _MNIST_CLASSES, split, data_dir, download)


def fashion_mnist(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] = FASHION_MNIST_MIRRORS,
) -> Dataset:
    """Zalando's Fashion-MNIST, verified by content.

    Same file names and format as MNIST; since copies are recognised by content, MNIST
    files under the same names are never mistaken for it. Searched like :func:`mnist`,
    with subfolders ``fashion_mnist/`` and Debian's ``fashion-mnist/`` (so
    ``apt-get install dataset-fashion-mnist`` is found in
    ``/usr/share/datasets/fashion-mnist``); downloads go to ``.../fashion_mnist/``.

    Args:
      split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
      data_dir: root data folder.
      download: fetch missing files from ``mirrors`` (in order).
      mirrors: base URLs of the files.

    Returns:
      ``Dataset``: inputs ``(N, 28, 28)`` ``uint8``, labels ``(N,)`` ``int32`` in
      ``[0, 10)``; ``info["class_names"]`` gives the clothing names.

    Raises:
      DataError: a file is present but corrupt or not the official one (and no other
        copy is).
      DownloadError: files missing and not downloadable; lists every folder searched.
    """
    return _official(
        "fashion_mnist", FASHION_MNIST_FILES, mirrors, _FASHION_CLASSES, split, data_dir, download
    )


def load_mnist_format(
    images_path: PathLike,
    labels_path: PathLike,
    *,
    n_classes: int = 10,
    image_shape: tuple[int, int] | None = (28, 28),
    name: str = "mnist-format",
    split: str = "unknown",
    max_bytes: int = MAX_IDX_BYTES,
) -> Dataset:
    """Load an images/labels pair of MNIST-format IDX files WITHOUT checksum verification.

    This is the explicit opt-in for files that are not the official ones: subsets,
    re-compressed or uncompressed copies, your own data. The files are still fully
    checked by fnet's IDX reader (magic number, type code, dimensions, byte count),
    and the label count and range are checked too.

    Args:
      images_path: IDX file (gzipped or not) of ``uint8`` images ``(N, rows, cols)``.
      labels_path: IDX file of ``uint8`` labels ``(N,)``.
      n_classes: labels must lie in ``[0, n_classes)``.
      image_shape: required ``(rows, cols)``; ``None`` accepts any.
      name: stored in ``info["name"]``.
      split: stored in ``info["split"]``.
      max_bytes: largest image data the header may declare (default 1 GiB); the
        labels file may declare a sixteenth of it. Reading stops there (see
        :func:`fnet.datasets.read_idx`), so a gzip bomb costs neither memory nor time.

    Returns:
      ``Dataset``: inputs ``(N, rows, cols)`` ``uint8``, labels ``(N,)`` ``int32``,
      ``info["verified"] = False``, ``info["subset"] = True``.

    Raises:
      DataError: a file is unreadable or malformed, declares more than ``max_bytes``,
        the counts differ, or a label is out of range; the message names the file.
    """
    images_path, labels_path = pathlib.Path(images_path), pathlib.Path(labels_path)
    images, labels = _read_pair(
        images_path,
        labels_path,
        n_classes=n_classes,
        image_shape=image_shape,
        max_images=max_bytes,
    )
    info = {
        "name": name,
        "split": split,
        "n_classes": n_classes,
        "class_names": tuple(str(c) for c in range(n_classes)),
        "files": [str(images_path), str(labels_path)],
        "verified": False,
        "subset": True,
    }
    return Dataset(images, labels, info)


def mnist_train_or_subset(
    data_dir: PathLike | None = None,
    download: bool = False,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
) -> Dataset:
    """MNIST training data: the official 60,000 if available, else the 5,000-image subset.

    Order: (1) the official ``train-*`` files anywhere :func:`mnist` looks (verified by
    content); (2) with ``download=True``, a download of them; (3)
    ``train5k-images-idx3-ubyte.gz`` and ``train5k-labels-idx1-ubyte.gz`` in the same
    folders (unverified, 500 images per class, SORTED BY CLASS: shuffle before use; read
    with the official training set's size as the limit, so a damaged or hostile file is
    refused without being decompressed); else a DownloadError. Falling back to the
    subset after a failed download emits a ``UserWarning``.

    Args:
      data_dir: root data folder (see :func:`mnist`).
      download: try to download the official files before falling back to the subset.
      mirrors: base URLs for that download.

    Returns:
      ``Dataset``: inputs ``(N, 28, 28)`` ``uint8``, labels ``(N,)`` ``int32``;
      ``info["subset"]`` tells which one you got (``N`` is 60,000 or 5,000).

    Raises:
      DataError: a file present is corrupt.
      DownloadError: neither the official files nor the subset are available.
    """
    dirs = candidate_dirs("mnist", data_dir)
    specs = MNIST_FILES["train"]
    have_official = all(
        any((d / n).is_file() for d in dirs for n in (s.name, s.name[:-3])) for s in specs
    )
    subset_dir = next((d for d in dirs if all((d / n).is_file() for n in MNIST_SUBSET_FILES)), None)
    if have_official or (download and subset_dir is None):
        return mnist("train", data_dir, download, mirrors=mirrors)
    if download:
        try:
            return mnist("train", data_dir, download=True, mirrors=mirrors)
        except DownloadError as e:
            warnings.warn(
                f"could not download the official MNIST training set; using the 5,000-image "
                f"subset in {subset_dir} instead. ({str(e).splitlines()[0]})",
                stacklevel=2,
            )
    if subset_dir is None:
        # Raises the DownloadError that lists the official file names.
        try:
            return mnist("train", data_dir, download=False, mirrors=mirrors)
        except DownloadError as e:
            raise DownloadError(
                f"{e}\nAlternatively, put the subset files {MNIST_SUBSET_FILES[0]} and "
                f"{MNIST_SUBSET_FILES[1]} there."
            ) from None
    ds = load_mnist_format(
        subset_dir / MNIST_SUBSET_FILES[0],
        subset_dir / MNIST_SUBSET_FILES[1],
        name="mnist",
        split="train",
        max_bytes=60_000 * 28 * 28,  # the official training set's size
    )
    ds.info["class_names"] = _MNIST_CLASSES
    ds.info.update(_ABOUT["mnist"])
    return ds
