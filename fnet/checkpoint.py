"""Checkpoints: save and restore pytrees of arrays (params, optimizer state, PRNG key, step).

Format
------
A checkpoint directory holds one sub-directory per saved step::

    ckpt_dir/
      step_000000100/
        arrays.safetensors   # every array leaf, named by its pytree path ("0/mu/dense/w")
        manifest.json        # format version, step, per-leaf path/shape/dtype,
                             # sha256 of arrays.safetensors, user `extra` (history, config)
      step_000000200/
      ...

Why safetensors + a JSON manifest (and not pickle, ``np.save`` of objects, or orbax):

* **No code execution by design.** A safetensors file is an 8-byte length, a JSON header and
  raw little-endian bytes; the manifest is plain JSON. Loading either can fail, but it cannot
  run code. fnet never pickles and never calls ``np.load(..., allow_pickle=True)``.
* **Small and language-neutral.** The ``safetensors`` package is a small, maintained Rust
  parser; the files open in PyTorch, Rust or any other safetensors reader.
* **orbax-checkpoint** is the JAX ecosystem's standard and handles sharded multi-host arrays
  with async writes, but it is a heavy dependency whose machinery fnet (single host, models
  that fit on one device) does not need.

Guarantees
----------
* **Atomic saves.** :func:`save` writes into a hidden temporary sibling directory
  (``.tmp-step_...``), calls ``fsync`` on both files and the directory, renames it to
  ``step_<9 digits>`` with ``os.rename`` and calls ``fsync`` on the parent. A crash or
  ``SIGKILL`` at any moment leaves either the new checkpoint complete or no trace of it but
  a temporary directory, which :func:`all_steps`/:func:`restore` ignore and the next
  :func:`save` removes. Only after the rename are checkpoints beyond the newest ``keep``
  deleted (each is renamed away first, so a crash mid-delete never leaves a half-deleted
  ``step_`` directory). Atomicity relies on POSIX ``rename``; on Windows the rename is
  still used but directory ``fsync`` is skipped.
* **Integrity.** The manifest records the sha256 and size of ``arrays.safetensors``; a
  truncated, bit-flipped or swapped file raises :class:`~fnet.errors.CheckpointError` naming
  the file.
* **Strict restore.** :func:`restore` checks every leaf path, shape and dtype of ``like``
  against the checkpoint and raises :class:`~fnet.errors.CheckpointError` naming the first
  mismatching path. Nothing is reshaped or cast.

Dtypes
------
bool, (u)int8/16/32/64, float16/32/64, complex64 and the ``ml_dtypes`` types bfloat16,
float8_e4m3fn and float8_e5m2 (stored with safetensors' native BF16/F8 tags, so other
readers understand them). Other dtypes (complex128, int4, object, ...) raise
:class:`~fnet.errors.CheckpointError` at save time: cast explicitly first.

New-style typed PRNG keys (``jax.random.key``) are stored as ``jax.random.key_data(k)``
(uint32) with the key's impl name in the manifest, and rewrapped with
``jax.random.wrap_key_data`` on restore. Legacy ``uint32[2]`` keys are ordinary arrays.

Multi-host
----------
Every process calls :func:`save` with the same arguments (it is a collective when arrays are
not fully addressable: those are gathered with
``jax.experimental.multihost_utils.process_allgather``); only process 0 writes, into a
directory all processes can read, and all processes wait for it at a barrier before
:func:`save` returns. :func:`restore` reads on every process and returns host NumPy arrays:
place them with ``jax.device_put(tree, shardings)``. Per-process sharded writing is not
supported: use orbax-checkpoint for models that do not fit in one host's memory.

Resuming a training loop
------------------------
Store everything the next step depends on: ``params``, ``opt_state``, the PRNG ``key`` that
the *next* step will split, and the ``step``; put the loss/metric ``history`` and the model
configuration in ``extra``::

    from fnet import checkpoint

    state = {"params": params, "opt_state": opt_state, "key": key}
    checkpoint.save(ckpt_dir, step, state, extra={"history": history, "config": config})

    # on start-up
    last = checkpoint.latest_step(ckpt_dir)
    if last is not None:
        state, extra = checkpoint.restore(ckpt_dir, jax.eval_shape(lambda: state), step=last)
        step, history = last, extra["history"]

If the data order is drawn from the key (or from ``(seed, epoch)``), the resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from fnet.errors import CheckpointError

__all__ = [
    "ARRAYS_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "all_steps",
    "latest_step",
    "read_manifest",
    "restore",
    "save",
]

FORMAT = "fnet.checkpoint"
FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.safetensors"
MANIFEST_FILE = "manifest.json"

_STEP_RE = re.compile(r"^step_(\d{9,})$")
_TMP_PREFIX = ".tmp-"
# .tmp-<kind>_<step>-<host>-<pid>-<token>; the host may itself contain dashes.
_TMP_RE = re.compile(r"^\.tmp-(?P<what>.+?)-(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{16})$")

# safetensors header dtype tag -> NumPy dtype. Read-only: a whitelist, never np.dtype(<file>).
_TAG_TO_DTYPE: Mapping[str, np.dtype] = MappingProxyType(
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
_NAME_TO_DTYPE: Mapping[str, np.dtype] = MappingProxyType(
    {dt.name: dt for dt in _TAG_TO_DTYPE.values()}
)

PyTree = Any


# --------------------------------------------------------------------------- listing


def _step_dir(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:09d}"


def all_steps(ckpt_dir: str | os.PathLike[str]) -> list[int]:
    """The steps of the complete checkpoints in ``ckpt_dir``, ascending.

    A checkpoint is a ``step_<digits>`` directory holding ``manifest.json``; temporary
    directories left by an interrupted save are not counted. A missing ``ckpt_dir`` gives
    ``[]``.
    """
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    steps = []
    for entry in d.iterdir():
        m = _STEP_RE.match(entry.name)
        if m and (entry / MANIFEST_FILE).is_file():
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(ckpt_dir: str | os.PathLike[str]) -> int | None:
    """The highest step with a complete checkpoint in ``ckpt_dir``, or ``None`` if there is
    none (so a training loop can branch between resuming and starting fresh)."""
    steps = all_steps(ckpt_dir)
    return steps[-1] if steps else None


# --------------------------------------------------------------------------- saving


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _host_tag() -> str:
    """This host's name as it appears in temporary directory names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _tmp_name(what: str) -> str:
    return f"{_TMP_PREFIX}{what}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(8)}"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp_dirs(ckpt_dir: Path) -> None:
    """Delete temporary directories left by saves of dead processes on this host.

    Directories of live processes (a concurrent save) and of other hosts (whose pids cannot
    be checked from here) are left alone.
    """
    host = _host_tag()
    for entry in ckpt_dir.iterdir():
        m = _TMP_RE.match(entry.name)
        if not m or not entry.is_dir() or m.group("host") != host:
            continue
        pid = int(m.group("pid"))
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def _fetch(x: Any) -> np.ndarray:
    """A host NumPy copy of an array leaf, gathering non-fully-addressable jax.Arrays."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x), order="C")  # (ascontiguousarray makes 0-d 1-d)


def _is_key_dtype(dtype: Any) -> bool:
    try:
        return bool(jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key))
    except TypeError:
        return False


def _leaf_to_numpy(path: str, leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
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
        if _is_key_dtype(leaf.dtype):
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
    if arr.dtype.name not in _NAME_TO_DTYPE or arr.dtype != _NAME_TO_DTYPE[arr.dtype.name]:
        raise CheckpointError(
            f"cannot save leaf {path!r}: dtype {arr.dtype} is not supported by safetensors "
            f"(supported: {', '.join(sorted(_NAME_TO_DTYPE))}). Cast it explicitly before "
            "saving, e.g. x.astype(np.float64)."
        )
    return arr, {"shape": list(arr.shape), "dtype": arr.dtype.name}


def save(
    ckpt_dir: str | os.PathLike[str],
    step: int,
    tree: PyTree,
    *,
    extra: Any = None,
    keep: int | None = 3,
    overwrite: bool = False,
) -> Path:
    """Atomically save a pytree of arrays as checkpoint ``step`` in ``ckpt_dir``.

    Args:
      ckpt_dir: directory holding the checkpoints; created if missing.
      step: non-negative int; the checkpoint goes to ``ckpt_dir/step_<9 digits>/``.
      tree: any pytree whose leaves are arrays of any shape (``jax.Array``, ``np.ndarray``,
        NumPy scalars) or typed PRNG keys: params, an optax ``opt_state`` (NamedTuples with
        int32 ``count`` scalars), a key. Leaves are keyed by their pytree path. For a
        training loop: ``{"params": ..., "opt_state": ..., "key": ...}``.
      extra: JSON-serialisable value stored in the manifest, e.g.
        ``{"history": {...}, "config": {...}}``. It round-trips through JSON (tuples come back
        as lists, dict keys as strings; NaN/inf floats are kept).
      keep: after the save, delete all but the ``keep`` highest-step checkpoints (never the
        one just written). ``None`` keeps everything.
      overwrite: replace an existing checkpoint of the same step. Otherwise that raises.

    Returns:
      The path of the checkpoint directory (on every process under multi-host).

    Raises:
      CheckpointError: a leaf is not an array or has a dtype safetensors cannot store,
        two leaves have the same name, ``extra`` is not JSON-serialisable, or ``step``
        exists and ``overwrite`` is False. Nothing is written in these cases.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise CheckpointError(f"step must be a non-negative int, got {step!r}")
    step = int(step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise CheckpointError(f"keep must be None or an int >= 1, got {keep!r}")
    ckpt_dir = Path(ckpt_dir)
    final = _step_dir(ckpt_dir, step)
    # Checked on every process (the directory is shared), so that all raise together
    # instead of leaving the others waiting at the barrier below.
    if final.exists() and not overwrite:
        raise CheckpointError(
            f"checkpoint {final} already exists; pass overwrite=True to replace it, or save "
            "under another step."
        )

    try:  # fail before the (possibly slow) fetch and serialisation of the arrays
        json.dumps(extra, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"`extra` is not JSON-serialisable ({exc}). Convert arrays and NumPy scalars with "
            ".tolist() / float(), or save arrays in `tree` instead."
        ) from exc

    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    tensors: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for key_path, leaf in leaves_with_path:
        path = jax.tree_util.keystr(key_path)
        name = jax.tree_util.keystr(key_path, simple=True, separator="/")
        if name in owner:
            raise CheckpointError(
                f"leaves {owner[name]!r} and {path!r} would both be stored as {name!r}; "
                "rename one of the dict keys (e.g. avoid '/' in keys)."
            )
        owner[name] = path
        arr, meta = _leaf_to_numpy(path, leaf)
        tensors[name] = arr
        entries.append({"path": path, "name": name, **meta})

    data = safetensors.numpy.save(tensors)
    import fnet

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "arrays_file": ARRAYS_FILE,
        "arrays_sha256": hashlib.sha256(data).hexdigest(),
        "arrays_bytes": len(data),
        "treedef": str(treedef),
        "leaves": entries,
        "versions": {
            "fnet": getattr(fnet, "__version__", None),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
        },
        "extra": extra,
    }
    manifest_bytes = _dump_manifest(manifest)
    if jax.process_index() == 0:
        _write_atomically(ckpt_dir, final, data, manifest_bytes, overwrite=overwrite)
        if keep is not None:
            _prune(ckpt_dir, keep, protect=step)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"fnet.checkpoint.save:{final}")
    return final


def _dump_manifest(manifest: dict[str, Any]) -> bytes:
    """JSON with one top-level field and one leaf per line (readable, diff-friendly)."""
    fields = []
    for k, v in manifest.items():
        if k == "leaves":
            rows = ",\n  ".join(json.dumps(e, allow_nan=True) for e in v)
            fields.append(f' "leaves": [\n  {rows}\n ]' if v else ' "leaves": []')
        else:
            fields.append(f" {json.dumps(k)}: {json.dumps(v, allow_nan=True)}")
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode("utf-8")


def _write_atomically(
    ckpt_dir: Path, final: Path, data: bytes, manifest_bytes: bytes, *, overwrite: bool
) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(ckpt_dir)
    tmp = ckpt_dir / _tmp_name(final.name)
    tmp.mkdir()
    try:
        _write_durably(tmp / ARRAYS_FILE, data)
        _write_durably(tmp / MANIFEST_FILE, manifest_bytes)
        _fsync_dir(tmp)
        old = None
        if overwrite and final.exists():
            # Not atomic as a whole: between these renames `final` is absent (older steps
            # are untouched, and the old copy survives in `old` until removed).
            old = ckpt_dir / _tmp_name("delete")
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(ckpt_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prune(ckpt_dir: Path, keep: int, *, protect: int) -> None:
    victims = [s for s in all_steps(ckpt_dir)[:-keep] if s != protect]
    for s in victims:
        trash = ckpt_dir / _tmp_name("delete")
        try:
            os.rename(_step_dir(ckpt_dir, s), trash)  # atomic: the step vanishes as a whole
        except FileNotFoundError:  # a concurrent save pruned it already
            continue
        _fsync_dir(ckpt_dir)
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------- restoring


def _resolve_step(ckpt_dir: Path, step: int | None) -> int:
    if step is None:
        step = latest_step(ckpt_dir)
        if step is None:
            raise CheckpointError(
                f"no checkpoint in {ckpt_dir} (no step_<digits>/ directory with "
                f"{MANIFEST_FILE}). Check the path, or call latest_step() first and start "
                "fresh when it returns None."
            )
    elif isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise CheckpointError(f"step must be a non-negative int or None, got {step!r}")
    return int(step)


def _bad_manifest(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid fnet checkpoint manifest: {why}. The checkpoint is corrupt "
        "or was not written by fnet.checkpoint.save; restore another step (see all_steps())."
    )


def _validate_leaf_entry(path: Path, i: int, e: Any) -> None:
    if not isinstance(e, dict):
        raise _bad_manifest(path, f"leaves[{i}] is not an object")
    for field in ("path", "name", "dtype"):
        if not isinstance(e.get(field), str):
            raise _bad_manifest(path, f"leaves[{i}].{field} is missing or not a string")
    shape = e.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise _bad_manifest(path, f"leaves[{i}].shape is not a list of non-negative ints")
    if "key_impl" in e:
        if not isinstance(e["key_impl"], str):
            raise _bad_manifest(path, f"leaves[{i}].key_impl is not a string")
    elif e["dtype"] not in _NAME_TO_DTYPE:
        raise _bad_manifest(path, f"leaves[{i}] has unsupported dtype {e['dtype']!r}")


def read_manifest(ckpt_dir: str | os.PathLike[str], *, step: int | None = None) -> dict[str, Any]:
    """Read and validate the JSON manifest of checkpoint ``step`` (default: the latest).

    Useful before :func:`restore`, e.g. to rebuild the model from ``manifest["extra"]``
    (its configuration) and so obtain the ``like`` structure. Keys: ``step`` (int),
    ``leaves`` (list of ``{"path", "name", "shape", "dtype"[, "key_impl"]}``), ``extra``,
    ``versions``, ``arrays_sha256``, ``arrays_bytes``, ``format``, ``format_version``.

    Raises:
      CheckpointError: no checkpoint, or the manifest is missing, not JSON or malformed.
    """
    ckpt_dir = Path(ckpt_dir)
    step = _resolve_step(ckpt_dir, step)
    path = _step_dir(ckpt_dir, step) / MANIFEST_FILE
    if not path.is_file():
        steps = all_steps(ckpt_dir)
        raise CheckpointError(
            f"no checkpoint for step {step}: {path} does not exist. "
            f"Available steps in {ckpt_dir}: {steps or 'none'}."
        )
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_manifest(path, f"not UTF-8 JSON ({exc})") from exc
    except RecursionError as exc:
        raise _bad_manifest(path, "JSON nested too deeply") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad_manifest(path, f"'format' is not {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version!r}; this fnet reads version {FORMAT_VERSION}. "
            "Upgrade fnet (or restore with the fnet version that wrote it)."
        )
    if manifest.get("step") != step:
        raise _bad_manifest(path, f"it records step {manifest.get('step')!r}, not {step}")
    if manifest.get("arrays_file") != ARRAYS_FILE:
        raise _bad_manifest(path, f"'arrays_file' is not {ARRAYS_FILE!r}")
    sha = manifest.get("arrays_sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _bad_manifest(path, "'arrays_sha256' is not a sha256 hex digest")
    nbytes = manifest.get("arrays_bytes")
    if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
        raise _bad_manifest(path, "'arrays_bytes' is not a non-negative int")
    leaves = manifest.get("leaves")
    if not isinstance(leaves, list):
        raise _bad_manifest(path, "'leaves' is not a list")
    for i, e in enumerate(leaves):
        _validate_leaf_entry(path, i, e)
    for field in ("path", "name"):
        if len({e[field] for e in leaves}) != len(leaves):
            raise _bad_manifest(path, f"two leaves have the same {field}")
    return manifest


def _describe(shape: Any, dtype: str) -> str:
    return f"shape {tuple(shape)} dtype {dtype}"


def _like_spec(path: str, leaf: Any) -> tuple[tuple[int, ...], str]:
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        raise CheckpointError(
            f"`like` leaf {path!r} is a {type(leaf).__name__}, not an array or "
            "jax.ShapeDtypeStruct; build `like` with jax.eval_shape or from real arrays."
        )
    dtype = leaf.dtype
    name = str(dtype) if _is_key_dtype(dtype) else np.dtype(dtype).name
    return tuple(int(n) for n in leaf.shape), name


def _check_structure(
    where: str, entries: list[dict[str, Any]], like_paths: list[str], like_specs: list
) -> None:
    """Raise naming the first leaf (in ``like``'s order) that differs from the checkpoint."""
    stored = {e["path"]: e for e in entries}
    problems: list[str] = []
    for path, (shape, dtype) in zip(like_paths, like_specs, strict=True):
        e = stored.get(path)
        if e is None:
            problems.append(
                f"path {path!r} is in `like` ({_describe(shape, dtype)}) but not in the checkpoint"
            )
        elif tuple(e["shape"]) != shape or e["dtype"] != dtype:
            problems.append(
                f"path {path!r}: checkpoint has {_describe(e['shape'], e['dtype'])}, "
                f"`like` has {_describe(shape, dtype)}"
            )
    like_set = set(like_paths)
    for e in entries:
        if e["path"] not in like_set:
            problems.append(
                f"path {e['path']!r} is in the checkpoint "
                f"({_describe(e['shape'], e['dtype'])}) but not in `like`"
            )
    if problems:
        more = f" (and {len(problems) - 1} more mismatching leaves)" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{where} does not match `like`: {problems[0]}{more}. Nothing was reshaped or "
            "cast. Restore into the structure the checkpoint was saved from: build the model "
            "and optimizer with the saved configuration (read_manifest(...)['extra']), or "
            "load into a matching `like` and convert explicitly afterwards."
        )


def restore(
    ckpt_dir: str | os.PathLike[str], like: PyTree, *, step: int | None = None
) -> tuple[PyTree, Any]:
    """Load checkpoint ``step`` (default: the latest complete one) into the structure of ``like``.

    Args:
      ckpt_dir: the directory given to :func:`save`.
      like: a pytree with the structure to restore into; its leaves are arrays or
        ``jax.ShapeDtypeStruct`` (e.g. ``jax.eval_shape(init_fn, key)``) and only their
        shape and dtype are read (weak types and shardings are ignored).
      step: the step to load; ``None`` loads :func:`latest_step`.

    Returns:
      ``(tree, extra)``: ``tree`` has ``like``'s structure; every leaf is a writable host
      ``np.ndarray`` with exactly the stored shape and dtype (bfloat16/float8 as
      ``ml_dtypes`` dtypes), except typed PRNG keys, which come back as ``jax.Array`` keys
      of the stored impl. ``extra`` is what was passed to :func:`save` (after JSON).
      Under ``jax_enable_x64=False`` note that ``jnp.asarray`` of a float64 leaf gives
      float32; ``like`` built under the same setting as the save avoids this.

    Raises:
      CheckpointError: no checkpoint (use :func:`latest_step` to branch), a corrupt or
        truncated file (named in the message), or ``like`` differs from the checkpoint in
        a path, shape or dtype (the first mismatching path and both sides are named).
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir, step=step)
    step = manifest["step"]
    step_dir = _step_dir(ckpt_dir, step)
    entries: list[dict[str, Any]] = manifest["leaves"]

    like_with_path, like_treedef = jax.tree_util.tree_flatten_with_path(like)
    like_paths = [jax.tree_util.keystr(p) for p, _ in like_with_path]
    like_specs = [
        _like_spec(p, leaf) for p, (_, leaf) in zip(like_paths, like_with_path, strict=True)
    ]
    _check_structure(f"checkpoint {step_dir}", entries, like_paths, like_specs)

    arrays_path = step_dir / ARRAYS_FILE
    try:
        data = arrays_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {arrays_path}: {exc}") from exc
    if len(data) != manifest["arrays_bytes"]:
        raise CheckpointError(
            f"{arrays_path} is truncated or corrupt: {len(data)} bytes, the manifest says "
            f"{manifest['arrays_bytes']}. Restore another step (see all_steps())."
        )
    if hashlib.sha256(data).hexdigest() != manifest["arrays_sha256"]:
        raise CheckpointError(
            f"{arrays_path} is corrupt: its sha256 does not match the manifest. "
            "Restore another step (see all_steps())."
        )
    try:
        header = safetensors.deserialize(data)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(f"{arrays_path} is not a valid safetensors file: {exc}") from exc
    del data

    by_name = {e["name"]: e for e in entries}
    raw: dict[str, np.ndarray] = {}
    for name, view in header:
        e = by_name.get(name)
        dtype = _TAG_TO_DTYPE.get(view["dtype"])
        if e is None or dtype is None:
            raise CheckpointError(
                f"{arrays_path} holds tensor {name!r} ({view['dtype']}) that its manifest "
                "does not describe; the checkpoint is inconsistent."
            )
        if "key_impl" not in e and (dtype.name != e["dtype"] or list(view["shape"]) != e["shape"]):
            raise CheckpointError(
                f"{arrays_path}: tensor {name!r} is {_describe(view['shape'], dtype.name)} "
                f"but the manifest says {_describe(e['shape'], e['dtype'])}."
            )
        raw[name] = np.frombuffer(view["data"], dtype=dtype).reshape(view["shape"])
    missing = [e["name"] for e in entries if e["name"] not in raw]
    if missing:
        raise CheckpointError(f"{arrays_path} lacks tensor {missing[0]!r} listed in its manifest.")

    by_path = {e["path"]: e for e in entries}
    leaves = []
    for path in like_paths:
        e = by_path[path]
        arr = raw[e["name"]]
        if "key_impl" in e:
            try:
                key = jax.random.wrap_key_data(jax.numpy.asarray(arr), impl=e["key_impl"])
            except Exception as err:
                raise CheckpointError(
                    f"{arrays_path}: cannot rebuild PRNG key {path!r} with impl "
                    f"{e['key_impl']!r} from data of shape {arr.shape}: {err}"
                ) from err
            if tuple(key.shape) != tuple(e["shape"]) or str(key.dtype) != e["dtype"]:
                raise CheckpointError(
                    f"{arrays_path}: PRNG key {path!r} rebuilt as "
                    f"{_describe(key.shape, str(key.dtype))}, manifest says "
                    f"{_describe(e['shape'], e['dtype'])}."
                )
            leaves.append(key)
        else:
            leaves.append(arr)
    return jax.tree_util.tree_unflatten(like_treedef, leaves), manifest["extra"]
