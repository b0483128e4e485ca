"""CIFAR-10 from the official python archive, checksum-verified, parsed without
trusting its pickles.

The archive ``cifar-10-python.tar.gz`` holds Python pickles. Unpickling can run
arbitrary code, so fnet (1) verifies the archive's SHA-256 before reading it and
(2) unpickles with a restricted :class:`pickle.Unpickler` whose ``find_class`` allows
only the few NumPy functions that rebuild arrays; any other global (``os.system``,
``builtins.eval``, ...) raises :class:`fnet.errors.DataError` before anything runs.
The batches are read straight from the archive; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from fnet.datasets.dataset import Dataset
from fnet.datasets.download import DEFAULT_TIMEOUT, FileSpec, ensure_files
from fnet.errors import DataError

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILE", "CIFAR10_MIRRORS", "cifar10", "read_cifar10_archive"]

PathLike = str | os.PathLike[str]

CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
#: Size and SHA-256 as used by Keras' ``cifar10.load_data``; MD5 as on the CIFAR page
#: and in torchvision.
CIFAR10_FILE = FileSpec(
    "cifar-10-python.tar.gz",
    170498071,
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_FOLDER = "cifar-10-batches-py"
_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

# The only globals a CIFAR-10 batch pickle needs. Python 2's cPickle (the official
# files) names numpy.core.*; NumPy 2 writes numpy._core.*; Python 3 protocol-2 pickles
# of bytes use _codecs.encode. Objects are taken from NumPy itself, never imported by
# the name found in the file.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _encode(obj: str, encoding: str = "utf-8") -> bytes:
    return obj.encode(encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _SCALAR
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _FROMBUFFER


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy's array-rebuilding globals."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._source}: the pickle asks for the global {module}.{name}, which a "
                "CIFAR-10 batch never needs; refusing to load it (unpickling untrusted data "
                "can run code). Use the official cifar-10-python.tar.gz."
            ) from None


def _unpickle(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle
        raise DataError(f"{source}: not a valid CIFAR-10 batch pickle ({e}).") from e
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict, the pickle holds a {type(obj).__name__}.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, source)
    if "data" not in d or "labels" not in d:
        raise DataError(f"{source}: batch lacks 'data' or 'labels' (keys: {sorted(d)}).")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        desc = f"{x.dtype}{x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{source}: 'data' must be a uint8 array (N, 3072), got {desc}.")
    y = np.asarray(d["labels"])
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{source}: {len(x)} images but labels of shape {y.shape} and dtype {y.dtype}."
        )
    if y.size and (y.min() < 0 or y.max() >= 10):
        raise DataError(f"{source}: labels outside [0, 10): min {y.min()}, max {y.max()}.")
    # Rows are 1024 red, 1024 green, 1024 blue values, each 32x32 row-major: to NHWC.
    images = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), y.astype(np.int32)


def read_cifar10_archive(path: PathLike, split: str = "train") -> Dataset:
    """Parse a CIFAR-10 python archive WITHOUT verifying its checksum.

    Used by :func:`cifar10` after verification; call it directly only for an archive
    you trust. The pickles inside are still loaded with the restricted unpickler.

    Args:
      path: a ``.tar.gz`` with ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``.
      split: ``"train"`` (the five data batches, in order) or ``"test"``.

    Returns:
      ``Dataset``: inputs ``(N, 32, 32, 3)`` ``uint8`` (NHWC, RGB), labels ``(N,)``
      ``int32`` in ``[0, 10)``, ``info["verified"] = False``.

    Raises:
      DataError: unreadable or damaged archive, missing batch, forbidden pickle global,
        or malformed batch; the message names the file.
    """
    if split not in _BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = pathlib.Path(path)
    xs, ys = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in _BATCHES[split]:
                member = f"{_FOLDER}/{name}"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DataError(
                        f"{path}: the archive has no file {member}. It is not the CIFAR-10 "
                        "python archive, or it is incomplete; download it again."
                    )
                x, y = _batch(f.read(), f"{path}:{member}")
                xs.append(x)
                ys.append(y)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{path}: damaged or truncated archive ({type(e).__name__}: {e}). Delete it and "
            "download it again."
        ) from e
    info = {
        "name": "cifar10",
        "split": split,
        "n_classes": 10,
        "class_names": CIFAR10_CLASSES,
        "files": [str(path)],
        "verified": False,
        "subset": False,
        "homepage": "https://www.cs.toronto.edu/~kriz/cifar.html",
        "license": "no licence stated; cite Krizhevsky (2009), Learning Multiple Layers of "
        "Features from Tiny Images",
    }
    return Dataset(np.concatenate(xs), np.concatenate(ys), info)


def cifar10(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] = CIFAR10_MIRRORS,
) -> Dataset:
    """CIFAR-10 from the official python archive, verified against its SHA-256.

    The archive is looked for in ``ROOT/cifar10/`` then ``ROOT/`` (``ROOT``: ``data_dir``,
    else ``$FNET_DATA_DIR``, else ``~/.cache/fnet``) and downloaded into
    ``ROOT/cifar10/`` (163 MiB) when missing and ``download`` is true. It is read in
    place each call (a few seconds); nothing is extracted.

    Args:
      split: ``"train"`` (50,000 examples) or ``"test"`` (10,000).
      data_dir: root data folder.
      download: fetch the archive from ``mirrors`` if missing.
      mirrors: base URLs of the archive.

    Returns:
      ``Dataset``: inputs ``(N, 32, 32, 3)`` ``uint8`` (NHWC, RGB), labels ``(N,)``
      ``int32`` in ``[0, 10)``; convert with :func:`fnet.datasets.scale_pixels`.

    Raises:
      DataError: the archive is present but corrupt or not the official one.
      DownloadError: the archive is missing and cannot be downloaded; says where to put it.
    """
    if split not in _BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    (path,) = ensure_files(
        "cifar10",
        [CIFAR10_FILE],
        data_dir=data_dir,
        download=download,
        mirrors=mirrors,
        timeout=DEFAULT_TIMEOUT,
        fix=" To read an archive you trust that is not the official one, use "
        "fnet.datasets.read_cifar10_archive(path, split), which skips the checksum.",
    )
    ds = read_cifar10_archive(path, split)
    ds.info["verified"] = True
    return ds
