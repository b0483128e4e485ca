"""fnet's reader and writer for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is: two zero bytes; one byte giving the element type; one byte giving the
number of dimensions ``d``; ``d`` big-endian ``uint32`` sizes; then the elements in
C order, big-endian. The files may be gzip-compressed (detected from the content, not
the name). The reader streams the file: it reads and checks the header first, refuses a
declared size above ``max_bytes`` before reading any data, reads exactly the declared
number of bytes and stops at the first byte beyond them. Memory is therefore bounded by
the data the header declares (at most ``max_bytes``), whatever the file inflates to.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pathlib
import stat
import zlib
from typing import BinaryIO, NamedTuple

import numpy as np

from fnet.errors import DataError

__all__ = ["IDX_DTYPES", "MAX_IDX_BYTES", "IdxRead", "parse_idx", "read_idx", "write_idx"]

#: The element types the IDX format defines, by type code (all are supported).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: Default limit on the data bytes an IDX header may declare (1 GiB; the largest
#: official file, MNIST's training images, holds 47,040,000).
MAX_IDX_BYTES = 1 << 30

_CODES = {dt.newbyteorder("=").str: code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_HINT = (
    "Delete the file and download it again, or check that it really is an IDX file "
    "(such as train-images-idx3-ubyte.gz)."
)


class IdxRead(NamedTuple):
    """An IDX array with the size and SHA-256 of the decompressed file it came from."""

    array: np.ndarray
    raw_bytes: int
    raw_sha256: str


def _fail(source: str, what: str) -> DataError:
    return DataError(f"{source}: {what} {_HINT}")


def _check_magic(head: bytes, source: str) -> tuple[np.dtype, int]:
    """Check the first 4 bytes; return the element dtype and the number of dimensions."""
    if len(head) < 4:
        raise _fail(source, f"file is only {len(head)} bytes, too short for an IDX header.")
    if head[0] != 0 or head[1] != 0:
        magic = int.from_bytes(head[:4], "big")
        raise _fail(
            source,
            f"wrong magic number 0x{magic:08X}: an IDX file starts with two zero bytes, "
            "a type code and the number of dimensions (MNIST images: 0x00000803, "
            "labels: 0x00000801).",
        )
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({IDX_DTYPES[c].name})" for c in IDX_DTYPES)
        raise _fail(source, f"unknown IDX type code 0x{code:02X}; the format defines {known}.")
    if ndim == 0:
        raise _fail(source, "header says the array has 0 dimensions.")
    return IDX_DTYPES[code], ndim


def _check_size(
    dims: bytes, ndim: int, dtype: np.dtype, source: str, max_bytes: int
) -> tuple[tuple[int, ...], int]:
    """Parse the sizes; return (shape, data bytes), refusing sizes above ``max_bytes``."""
    if len(dims) < 4 * ndim:
        raise _fail(
            source,
            f"truncated header: {ndim} dimensions need {4 + 4 * ndim} header bytes, "
            f"the file has {4 + len(dims)}.",
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: never overflows
    if nbytes > max_bytes:
        raise DataError(
            f"{source}: the header declares shape {shape} of {dtype.name}, "
            f"{nbytes:,} bytes of data, more than the limit of {max_bytes:,} bytes. "
            "The file is damaged or not an IDX file; if it really is that large, pass "
            "a larger max_bytes=."
        )
    return shape, nbytes


def _read_exactly(f: BinaryIO, n: int, sha) -> bytearray:
    """Read ``n`` bytes (fewer at end of file), growing the buffer as data arrives."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    sha.update(buf)
    return buf


def _read_stream(f: BinaryIO, source: str, max_bytes: int, total: int | None) -> IdxRead:
    """Read an IDX stream; ``total`` is its length when known (an uncompressed file)."""
    sha = hashlib.sha256()
    head = _read_exactly(f, 4, sha)
    dtype, ndim = _check_magic(bytes(head), source)
    dims = _read_exactly(f, 4 * ndim, sha)
    shape, nbytes = _check_size(bytes(dims), ndim, dtype, source, max_bytes)
    header = 4 + 4 * ndim
    have = None if total is None else total - header
    if have is None or have == nbytes:
        data = _read_exactly(f, nbytes, sha)
        have = len(data) if len(data) < nbytes else None
    if have is not None and have < nbytes:
        raise _fail(
            source,
            f"truncated data: shape {shape} of {dtype.name} needs {nbytes} bytes after "
            f"the header, the file has {have}.",
        )
    if have is not None and have > nbytes:
        raise _fail(
            source,
            f"{have - nbytes} unexpected bytes after the data: shape {shape} of "
            f"{dtype.name} needs {nbytes} bytes after the header, the file has {have}.",
        )
    if f.read(1):
        raise _fail(
            source,
            f"unexpected bytes after the data: shape {shape} of {dtype.name} needs "
            f"{nbytes} bytes after the header, and the stream goes on (reading stopped "
            "there, without decompressing the rest).",
        )
    try:
        arr = np.frombuffer(data, dtype).reshape(shape)
    except ValueError as e:  # an empty array whose other dimensions overflow
        raise _fail(source, f"the header declares an impossible shape {shape} ({e}).") from e
    if not dtype.isnative and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return IdxRead(arr, header + nbytes, sha.hexdigest())


def parse_idx(
    data: bytes, source: str = "<bytes>", *, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file.

    Args:
      data: the whole file content.
      source: the file name to use in error messages.
      max_bytes: largest number of data bytes the header may declare.

    Returns:
      ``np.ndarray`` with the shape given in the header and a native-byte-order dtype:
      ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``.

    Raises:
      DataError: bad magic number, unknown type code, zero dimensions, a declared size
        above ``max_bytes`` (or one whose byte count overflows), truncated header or
        data, or bytes after the data.
    """
    return _read_stream(io.BytesIO(data), source, max_bytes, len(data)).array


def read_idx_verbose(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> IdxRead:
    """:func:`read_idx` that also returns the decompressed file's size and SHA-256.

    Used to verify official files by content (so a re-compressed copy is accepted).
    """
    path = pathlib.Path(path)
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}).") from e
    with os.fdopen(fd, "rb") as f:
        try:
            mode = os.fstat(f.fileno()).st_mode
        except OSError as e:
            raise DataError(f"{path}: cannot read the file ({e}).") from e
        if not stat.S_ISREG(mode):
            raise DataError(
                f"{path}: not a regular file (a device, pipe or directory); an IDX file must "
                "be a regular file."
            )
        try:
            magic = f.read(2)
            f.seek(0)
            if magic == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    return _read_stream(g, source, max_bytes, None)  # type: ignore[arg-type]
            return _read_stream(f, source, max_bytes, os.fstat(f.fileno()).st_size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise _fail(source, f"damaged or truncated gzip stream ({e}).") from e
        except OSError as e:
            raise DataError(f"{path}: cannot read the file ({e}).") from e


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, without ever holding more than it declares.

    The header is read and checked first; a declared data size above ``max_bytes`` is
    refused before any data is read; exactly the declared bytes are then read and the
    file must end there (a gzip stream that inflates beyond is refused after reading
    one byte too many, not decompressed to the end). Peak memory is about twice the
    declared data size (at most ``2 * max_bytes``).

    Args:
      path: a regular file (not a device or pipe), gzip detected from its content.
      max_bytes: largest number of data bytes the header may declare (default
        :data:`MAX_IDX_BYTES`, 1 GiB).

    Returns:
      ``np.ndarray`` with the header's shape (1-D or more) and native dtype (see
      :func:`parse_idx`). The array owns its memory and is writable.

    Raises:
      DataError: the file is unreadable or not a regular file, a damaged gzip stream, a
        header declaring more than ``max_bytes`` or an impossible shape, or not a valid
        IDX file; the message names the file.
    """
    return read_idx_verbose(path, max_bytes=max_bytes).array


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write ``array`` (1-D or more, an IDX dtype) as an IDX file.

    Args:
      path: destination; gzip-compressed when ``compress`` is true, or when it is
        ``None`` and the name ends in ``.gz``.
      array: ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``, any
        byte order, at least 1-D, every dimension < 2**32.

    Raises:
      ValueError: a dtype or number of dimensions the format cannot store.
    """
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=").str
    if key not in _CODES:
        raise ValueError(
            f"IDX cannot store dtype {arr.dtype}; use one of "
            + ", ".join(dt.name for dt in IDX_DTYPES.values())
        )
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX stores arrays of 1 to 255 dimensions, got {arr.ndim}")
    code = _CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, IDX_DTYPES[code]).tobytes()
    path = pathlib.Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
