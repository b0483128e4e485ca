"""What a checkpoint holds: the file names, the dtypes safetensors can store, how a leaf
becomes an array, and the manifest's schema (declared once, checked by one loop)."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import ml_dtypes
import numpy as np
import safetensors
from jax.experimental import multihost_utils

from fnet.errors import CheckpointError

FORMAT = "fnet.checkpoint"
FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.safetensors"
MANIFEST_FILE = "manifest.json"
#: Largest manifest restore reads (it holds the leaf list and the user's ``extra``).
MAX_MANIFEST_BYTES = 64 << 20
#: Longest integer literal accepted in a manifest (Python refuses > 4300 digits anyway).
MAX_INT_DIGITS = 40

# safetensors header dtype tag -> NumPy dtype. Read-only: a whitelist, never np.dtype(<file>).
TAG_TO_DTYPE: Mapping[str, np.dtype] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "U8": np.dtype(np.uint8),
        "I8": np.dtype(np.int8),
        "U16": np.dtype(np.uint16),
        "I16": np.dtype(np.int16),
        "U32": np.dtype(np.uint32),
        "I32": np.dtype(np.int32),
        "U64": np.dtype(np.uint64),
        "I64": np.dtype(np.int64),
        "F16": np.dtype(np.float16),
        "F32": np.dtype(np.float32),
        "F64": np.dtype(np.float64),
        "C64": np.dtype(np.complex64),
        "BF16": np.dtype(ml_dtypes.bfloat16),
        "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
        "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    }
)
NAME_TO_DTYPE: Mapping[str, np.dtype] = MappingProxyType(
    {dt.name: dt for dt in TAG_TO_DTYPE.values()}
)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("fnet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return None


FNET_VERSION = _installed_version()


# --------------------------------------------------------------------------- leaves


def is_key_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a typed PRNG key dtype (``jax.random.key``)."""
    try:
        return bool(jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key))
    except TypeError:
        return False


def _fetch(x: Any) -> np.ndarray:
    """A host NumPy copy of an array leaf, gathering non-fully-addressable jax.Arrays."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x), order="C")  # (ascontiguousarray makes 0-d 1-d)


def leaf_to_numpy(path: str, leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The array to store for one leaf and its manifest entry (without the name)."""
    if isinstance(leaf, jax.ShapeDtypeStruct) or not (
        hasattr(leaf, "shape") and hasattr(leaf, "dtype")
    ):
        raise CheckpointError(
            f"cannot save leaf {path!r}: it is a {type(leaf).__name__}, not an array. "
            "Wrap numbers with np.asarray(x, dtype=...) so the dtype is explicit, or put "
            "non-array values in `extra`."
        )
    try:
        if is_key_dtype(leaf.dtype):
            arr = _fetch(jax.random.key_data(leaf))
            meta = {
                "shape": list(leaf.shape),
                "dtype": str(leaf.dtype),
                "key_impl": str(jax.random.key_impl(leaf)),
            }
            return arr, meta
        arr = _fetch(leaf)
    except Exception as exc:  # tracers, deleted buffers, ...
        raise CheckpointError(
            f"cannot fetch leaf {path!r} to the host ({type(exc).__name__}: {exc}). "
            "Call save() outside jax.jit / jax.grad, on concrete arrays."
        ) from exc
    if arr.dtype.byteorder == ">":  # a byte-order change, not a cast: values are kept
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.name not in NAME_TO_DTYPE or arr.dtype != NAME_TO_DTYPE[arr.dtype.name]:
        raise CheckpointError(
            f"cannot save leaf {path!r}: dtype {arr.dtype} is not supported by safetensors "
            f"(supported: {', '.join(sorted(NAME_TO_DTYPE))}). Cast it explicitly before "
            "saving, e.g. x.astype(np.float64)."
        )
    return arr, {"shape": list(arr.shape), "dtype": arr.dtype.name}


# --------------------------------------------------------------------------- manifest


def build_manifest(
    step: int, data: bytes, sha256: str, treedef: Any, leaves: list, extra: Any
) -> bytes:
    """The manifest's bytes: JSON with one top-level field and one leaf per line."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "arrays_file": ARRAYS_FILE,
        "arrays_sha256": sha256,
        "arrays_bytes": len(data),
        "treedef": str(treedef),
        "leaves": leaves,
        "versions": {
            "fnet": FNET_VERSION,
            "jax": jax.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
        },
        "extra": extra,
    }
    fields = []
    for k, v in manifest.items():
        if k == "leaves":
            rows = ",\n  ".join(json.dumps(e, allow_nan=True) for e in v)
            fields.append(f' "leaves": [\n  {rows}\n ]' if v else ' "leaves": []')
        else:
            fields.append(f" {json.dumps(k)}: {json.dumps(v, allow_nan=True)}")
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode("utf-8")


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0  # `type is`, so True/False are not counts


def _text(v: Any) -> bool:
    return type(v) is str


# The manifest's schema: field -> (test, what the field must be). Checked in order.
Check = tuple[Callable[[Any], bool], str]
MANIFEST_FIELDS: Mapping[str, Check] = MappingProxyType(
    {
        "format": (lambda v: v == FORMAT, f"the string {FORMAT!r}"),
        "format_version": (lambda v: v == FORMAT_VERSION, f"{FORMAT_VERSION}"),
        "step": (_count, "a non-negative int"),
        "arrays_file": (lambda v: v == ARRAYS_FILE, f"the string {ARRAYS_FILE!r}"),
        "arrays_sha256": (
            lambda v: _text(v) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
            "a SHA-256 hex digest",
        ),
        "arrays_bytes": (_count, "a non-negative int"),
        "leaves": (lambda v: type(v) is list, "a list"),
    }
)
LEAF_FIELDS: Mapping[str, Check] = MappingProxyType(
    {
        "path": (_text, "a string"),
        "name": (_text, "a string"),
        "shape": (lambda v: type(v) is list and all(map(_count, v)), "a list of counts"),
        "dtype": (_text, "a string"),
    }
)
OPTIONAL_LEAF_FIELDS: Mapping[str, Check] = MappingProxyType({"key_impl": (_text, "a string")})


def _bad(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid fnet checkpoint manifest: {why}. The checkpoint is corrupt "
        "or was not written by fnet.checkpoint.save; restore another step (see all_steps())."
    )


def _check_fields(
    path: Path, obj: Any, where: str, fields: Mapping[str, Check], optional: Mapping = {}
) -> None:
    if type(obj) is not dict:
        raise _bad(path, f"{where or 'the manifest'} is not a JSON object")
    for name, (test, what) in {**fields, **optional}.items():
        if name not in obj and name in optional:
            continue
        if not test(obj.get(name)):
            if name == "format_version" and type(obj.get(name)) is int:
                raise CheckpointError(
                    f"{path} has format_version {obj[name]}; this fnet reads version "
                    f"{FORMAT_VERSION}. Upgrade fnet (or restore with the fnet version that "
                    "wrote it)."
                )
            raise _bad(path, f"{where}{name!r} is missing or not {what}")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (the limit is {MAX_INT_DIGITS})")
    return int(text)


def parse_manifest(path: Path, raw: bytes, step: int) -> dict[str, Any]:
    """Decode and validate a manifest read from ``path`` for checkpoint ``step``."""
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_int=_bounded_int)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _bad(path, f"not UTF-8 JSON within fnet's limits ({exc})") from exc
    except RecursionError as exc:
        raise _bad(path, "JSON nested too deeply") from exc
    _check_fields(path, manifest, "", MANIFEST_FIELDS)
    if manifest["step"] != step:
        raise _bad(path, f"it records step {manifest['step']}, not {step}")
    leaves = manifest["leaves"]
    for i, e in enumerate(leaves):
        _check_fields(path, e, f"leaves[{i}].", LEAF_FIELDS, OPTIONAL_LEAF_FIELDS)
        if "key_impl" not in e and e["dtype"] not in NAME_TO_DTYPE:
            raise _bad(path, f"leaves[{i}] has unsupported dtype {e['dtype']!r}")
    for field in ("path", "name"):
        if len({e[field] for e in leaves}) != len(leaves):
            raise _bad(path, f"two leaves have the same {field}")
    return manifest
