"""CIFAR-10 from the official archives, checksum-verified and parsed with bounded memory.

fnet prefers the official *binary* archive ``cifar-10-binary.tar.gz``: each record is one
label byte and 3072 pixel bytes, so reading it needs no pickle at all. The python
archive ``cifar-10-python.tar.gz`` (Python pickles) is still read when it is the one
present; its pickles are loaded with a restricted unpickler that resolves only the
NumPy functions which rebuild an array *from bytes stored in the file*, and the result
must be a ``uint8`` array no larger than the pickle and a flat ``list`` of ``int``
labels of the right length. Both archives are read in place, member by member, with
every member's declared size checked before it is read; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import stat
import tarfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from fnet.datasets.cache import find_dataset_dir
from fnet.datasets.dataset import Dataset
from fnet.datasets.download import DEFAULT_TIMEOUT, FileSpec, ensure_files
from fnet.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILE",
    "CIFAR10_MIRRORS",
    "CIFAR10_PYTHON_FILE",
    "cifar10",
    "read_cifar10_archive",
]

PathLike = str | os.PathLike[str]

CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
#: The binary archive fnet downloads. Size and SHA-256 as in TensorFlow Datasets'
#: checksum registry (the same digest is pinned by MLDatasets.jl and torch.rb); MD5 as
#: on the CIFAR page.
CIFAR10_FILE = FileSpec(
    "cifar-10-binary.tar.gz",
    170052171,
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    "c32a1d4ab5d03f1284b67883e8d87530",
)
#: The python (pickle) archive, read when present instead of the binary one. Size and
#: SHA-256 as used by Keras' ``cifar10.load_data``; MD5 as on the CIFAR page and in
#: torchvision.
CIFAR10_PYTHON_FILE = FileSpec(
    "cifar-10-python.tar.gz",
    170498071,
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_PIXELS = 3072
_RECORD = 1 + _PIXELS  # binary format: label byte, then 1024 R, 1024 G, 1024 B
_PER_BATCH = 10_000
_MAX_PICKLE = 40 << 20  # an official python batch is 31 MB
_MAX_MEMBERS = 64  # the official archives hold 8
_FORMATS = {
    "bin": (
        "cifar-10-batches-bin",
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    ),
    "py": (
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    ),
}


# --------------------------------------------------------------------- python pickles


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: usable only as ``_reconstruct``'s first
    argument. Calling it (``ndarray(shape)`` would give uninitialised memory, or a view
    of a few bytes repeated by zero strides) fails."""


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``, only for the empty placeholder that
    NumPy pickles fill from bytes in the file with ``__setstate__``."""
    if cls is not _NdarrayToken or tuple(shape) != (0,):
        raise pickle.UnpicklingError(
            f"_reconstruct({cls!r}, {shape!r}) is not how NumPy pickles an array"
        )
    return np.ndarray((0,), np.uint8)


def _encode(obj: str, encoding: str = "utf-8") -> bytes:
    return obj.encode(encoding)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol-5 pickles), for bytes only."""
    if not isinstance(buf, (bytes, bytearray)):
        raise pickle.UnpicklingError("_frombuffer of something other than bytes")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy's array-from-bytes globals."""

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
                "can run code). Use the official cifar-10-binary.tar.gz."
            ) from None


def _unpickle(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle
        raise DataError(f"{source}: not a valid CIFAR-10 batch pickle ({e}).") from e
    if type(obj) is not dict:
        raise DataError(f"{source}: expected a dict, the pickle holds a {type(obj).__name__}.")
    out = {}
    for k, v in obj.items():
        if type(k) not in (str, bytes):
            raise DataError(f"{source}: a batch's keys are strings, found a {type(k).__name__}.")
        out[k.decode("latin1") if isinstance(k, bytes) else k] = v
    return out


def _python_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, source)
    if "data" not in d or "labels" not in d:
        raise DataError(f"{source}: batch lacks 'data' or 'labels' (keys: {sorted(d)}).")
    x, y = d["data"], d["labels"]
    if (
        type(x) is not np.ndarray
        or x.dtype != np.uint8
        or x.ndim != 2
        or x.shape[1] != _PIXELS
        or not x.flags.c_contiguous
    ):
        desc = f"{x.dtype}{x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{source}: 'data' must be a contiguous uint8 array (N, 3072), got {desc}.")
    if x.nbytes > len(data):  # its bytes cannot all have come from the file
        raise DataError(
            f"{source}: 'data' holds {x.nbytes} bytes but the pickle only {len(data)}; "
            "refusing an array that was not read from the file."
        )
    if type(y) is not list or len(y) != len(x):
        n = len(y) if type(y) is list else type(y).__name__
        raise DataError(
            f"{source}: 'labels' must be a flat list of {len(x)} ints (one per image), got {n}."
        )
    if not all(type(v) is int and 0 <= v < 10 for v in y):
        raise DataError(f"{source}: 'labels' must be ints in [0, 10); found other values.")
    return _to_nhwc(x), np.asarray(y, np.int32)


# --------------------------------------------------------------------- binary records


def _binary_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % _RECORD:
        raise DataError(
            f"{source}: {len(data)} bytes is not a whole number of {_RECORD}-byte records "
            "(1 label byte + 3072 pixel bytes)."
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0]
    if labels.size and labels.max() >= 10:
        raise DataError(f"{source}: label byte {labels.max()} outside [0, 10).")
    return _to_nhwc(records[:, 1:]), labels.astype(np.int32)


def _to_nhwc(x: np.ndarray) -> np.ndarray:
    # Rows are 1024 red, 1024 green, 1024 blue values, each 32x32 row-major: to NHWC.
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


# --------------------------------------------------------------------- archive


def _read_batches(tar: tarfile.TarFile, path: pathlib.Path, split: str) -> tuple[str, dict]:
    """Recognise the archive's format and read the members of ``split``.

    Every member's declared size is checked when its header is reached, so a huge
    member is refused before anything skips or reads through it.
    """
    fmt, wanted, limit = "", set(), _MAX_PICKLE
    got: dict[str, bytes] = {}
    for count, member in enumerate(iter(tar.next, None)):
        if count >= _MAX_MEMBERS:
            raise DataError(f"{path}: more than {_MAX_MEMBERS} members; not a CIFAR-10 archive.")
        if not fmt:
            for f, (folder, batches) in _FORMATS.items():
                if member.name == folder or member.name.startswith(folder + "/"):
                    fmt, wanted = f, {f"{folder}/{b}" for b in batches[split]}
                    limit = _PER_BATCH * _RECORD if f == "bin" else _MAX_PICKLE
        if member.size > limit:
            raise DataError(
                f"{path}: member {member.name} declares {member.size:,} bytes, more than the "
                f"{limit:,} a CIFAR-10 archive holds there; refusing to read it."
            )
        if member.name in wanted and member.isfile():
            stream = tar.extractfile(member)
            if stream is not None:
                got[member.name] = stream.read(member.size)
            if len(got) == len(wanted):
                break
    if not fmt:
        raise DataError(
            f"{path}: not a CIFAR-10 archive (no folder {_FORMATS['bin'][0]}/ or "
            f"{_FORMATS['py'][0]}/ inside)."
        )
    return fmt, got


def read_cifar10_archive(path: PathLike, split: str = "train") -> Dataset:
    """Parse a CIFAR-10 archive (binary or python version) WITHOUT verifying its checksum.

    Used by :func:`cifar10` after verification; call it directly only for an archive
    you trust. The format is recognised from the folder inside. Reading is bounded all
    the same: each member's declared size is checked before it is read (binary batch:
    at most 10,000 records of 3,073 bytes; pickle: at most 40 MiB), pickles go through
    the restricted unpickler, and at most 64 members are looked at.

    Args:
      path: a ``.tar.gz`` with ``cifar-10-batches-bin/data_batch_1..5.bin`` and
        ``test_batch.bin``, or ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``.
      split: ``"train"`` (the five data batches, in order) or ``"test"``.

    Returns:
      ``Dataset``: inputs ``(N, 32, 32, 3)`` ``uint8`` (NHWC, RGB), labels ``(N,)``
      ``int32`` in ``[0, 10)``, ``info["verified"] = False``.

    Raises:
      ValueError: ``split`` is not ``"train"`` or ``"test"``.
      DataError: unreadable or damaged archive, missing or oversized member, forbidden
        pickle global, an array not read from the file, labels that are not a flat list
        of the right length, or a malformed batch; the message names the file.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = pathlib.Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise DataError(f"{path}: not a regular file (a device, pipe or directory).")
        with tarfile.open(path, "r:gz") as tar:
            fmt, got = _read_batches(tar, path, split)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{path}: damaged or truncated archive ({type(e).__name__}: {e}). Delete it and "
            "download it again."
        ) from e
    folder, batches = _FORMATS[fmt]
    xs, ys = [], []
    for name in (f"{folder}/{b}" for b in batches[split]):
        if name not in got:
            raise DataError(
                f"{path}: the archive has no file {name}. It is not a CIFAR-10 archive, or it "
                "is incomplete; download it again."
            )
        parse = _binary_batch if fmt == "bin" else _python_batch
        x, y = parse(got.pop(name), f"{path}:{name}")
        xs.append(x)
        ys.append(y)
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
    """CIFAR-10 from an official archive, verified against its published SHA-256.

    The binary archive ``cifar-10-binary.tar.gz`` is looked for in
    :func:`fnet.datasets.candidate_dirs` order (``data_dir``, ``$FNET_DATA_DIR``,
    ``~/.cache/fnet``, ``/usr/share/datasets``; in a ``cifar10/`` subfolder or directly);
    when it is absent but the python archive ``cifar-10-python.tar.gz`` is present, that
    one is used. Otherwise the binary archive (163 MiB) is downloaded into
    ``.../cifar10/`` when ``download`` is true. It is read in place each call (a few
    seconds); nothing is extracted.

    Args:
      split: ``"train"`` (50,000 examples) or ``"test"`` (10,000).
      data_dir: root data folder.
      download: fetch the archive from ``mirrors`` if missing.
      mirrors: base URLs of the archive.

    Returns:
      ``Dataset``: inputs ``(N, 32, 32, 3)`` ``uint8`` (NHWC, RGB), labels ``(N,)``
      ``int32`` in ``[0, 10)``; convert with :func:`fnet.datasets.scale_pixels`.

    Raises:
      ValueError: ``split`` is not ``"train"`` or ``"test"``.
      DataError: the archive is present but corrupt or not the official one.
      DownloadError: no archive and none can be downloaded; says where to put it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    spec = CIFAR10_FILE
    if (
        find_dataset_dir("cifar10", [CIFAR10_FILE.name], data_dir) is None
        and find_dataset_dir("cifar10", [CIFAR10_PYTHON_FILE.name], data_dir) is not None
    ):
        spec = CIFAR10_PYTHON_FILE
    (path,) = ensure_files(
        "cifar10",
        [spec],
        data_dir=data_dir,
        download=download,
        mirrors=mirrors,
        timeout=DEFAULT_TIMEOUT,
        fix=" To read an archive you trust that is not the official one, use "
        "fnet.datasets.read_cifar10_archive(path, split), which skips the checksum.",
        others="cifar-10*",
    )
    ds = read_cifar10_archive(path, split)
    ds.info["verified"] = True
    return ds
