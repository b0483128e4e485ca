"""fnet's reader and writer for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is: two zero bytes; one byte giving the element type; one byte giving the
number of dimensions ``d``; ``d`` big-endian ``uint32`` sizes; then the elements in
C order, big-endian. The files may be gzip-compressed (detected from the content, not
the name). The reader checks every part of that and the exact byte count, and each
error names the file and says what was wrong.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

from fnet.errors import DataError

__all__ = ["IDX_DTYPES", "parse_idx", "read_idx", "write_idx"]

#: The element types the IDX format defines, by type code (all are supported).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str: code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_HINT = (
    "Delete the file and download it again, or check that it really is an IDX file "
    "(such as train-images-idx3-ubyte.gz)."
)


def _fail(source: str, what: str) -> DataError:
    return DataError(f"{source}: {what} {_HINT}")


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file.

    Args:
      data: the whole file content.
      source: the file name to use in error messages.

    Returns:
      ``np.ndarray`` with the shape given in the header and a native-byte-order dtype:
      ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``.

    Raises:
      DataError: bad magic number, unknown type code, zero dimensions, truncated
        header or data, or bytes after the data.
    """
    if len(data) < 4:
        raise _fail(source, f"file is only {len(data)} bytes, too short for an IDX header.")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise _fail(
            source,
            f"wrong magic number 0x{magic:08X}: an IDX file starts with two zero bytes, "
            "a type code and the number of dimensions (MNIST images: 0x00000803, "
            "labels: 0x00000801).",
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({IDX_DTYPES[c].name})" for c in IDX_DTYPES)
        raise _fail(source, f"unknown IDX type code 0x{code:02X}; the format defines {known}.")
    if ndim == 0:
        raise _fail(source, "header says the array has 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _fail(
            source,
            f"truncated header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(data)}.",
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise _fail(
            source,
            f"truncated data: shape {shape} of {dtype.name} needs {expected} bytes after "
            f"the header, the file has {actual}.",
        )
    if actual > expected:
        raise _fail(
            source,
            f"{actual - expected} unexpected bytes after the data: shape {shape} of "
            f"{dtype.name} needs {expected} bytes after the header, the file has {actual}.",
        )
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not.

    Returns:
      ``np.ndarray`` with the header's shape (1-D or more) and native dtype (see
      :func:`parse_idx`). The array owns its memory and is writable.

    Raises:
      DataError: the file is unreadable, a damaged gzip stream, or not a valid IDX file;
        the message names the file.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}).") from e
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise _fail(str(path), f"damaged or truncated gzip stream ({e}).") from e
    return parse_idx(raw, str(path))


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write ``array`` (1-D or more, an IDX dtype) as an IDX file.

    Args:
      path: destination; gzip-compressed when ``compress`` is true, or when it is
        ``None`` and the name ends in ``.gz``.
      array: ``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``, any
        byte order, at least 1-D, every dimension < 2**32.
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
