"""Checkpoints: save and restore pytrees of arrays (params, optimizer state, PRNG key, step).

``save`` writes ``ckpt_dir/step_<9 digits>/`` atomically: ``arrays.safetensors`` (every
array leaf, named by its pytree path) and ``manifest.json`` (format, step, each leaf's
path/shape/dtype, the arrays file's SHA-256 and size, the user's ``extra``). ``restore``
checks the manifest, the file's type, size and SHA-256, and every leaf's path, shape and
dtype against ``like`` before returning anything. No pickle anywhere. Every failure,
including OS errors, is a :class:`~fnet.errors.CheckpointError` naming the path. The
format, guarantees, limits and a resume recipe are in ``docs/checkpoints.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import safetensors
import safetensors.numpy
from jax.experimental import multihost_utils

from fnet._checks import check_int
from fnet.checkpoint._files import (
    all_steps,
    checked_step_dir,
    host_tag,
    prune,
    read_regular,
    step_dir,
    write_atomically,
)
from fnet.checkpoint._format import (
    ARRAYS_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    TAG_TO_DTYPE,
    build_manifest,
    is_key_dtype,
    leaf_to_numpy,
    parse_manifest,
)
from fnet.errors import CheckpointError

__all__ = [
    "ARRAYS_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "all_steps",
    "latest_step",
    "read_manifest",
    "restore",
    "save",
]

PyTree = Any
_host_tag = host_tag  # the tag in temporary directory names (tests use it)


def latest_step(ckpt_dir: str | os.PathLike[str]) -> int | None:
    """The highest step with a complete checkpoint in ``ckpt_dir``, or ``None`` if there is
    none (so a training loop can branch between resuming and starting fresh).

    Raises:
      CheckpointError: ``ckpt_dir`` exists but is not a readable directory.
    """
    steps = all_steps(ckpt_dir)
    return steps[-1] if steps else None


@contextlib.contextmanager
def _argument_errors_as_checkpoint_errors() -> Iterator[None]:
    """Re-raise :func:`~fnet._checks.check_int`'s ``TypeError``/``ValueError`` as a
    :class:`CheckpointError` (this module's one error type, see its docstring)."""
    try:
        yield
    except (TypeError, ValueError) as e:
        raise CheckpointError(str(e)) from None


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
      CheckpointError: ``step`` is not an int >= 0 (``True`` is not a step) or ``keep``
        not ``None`` or an int >= 1; a leaf is not an array or has a dtype safetensors
        cannot store; two leaves have the same name, ``extra`` is not JSON-serialisable, or ``step``
        exists and ``overwrite`` is False (nothing is written in these cases); or an OS
        error while writing (``ckpt_dir`` is a file or a dangling symlink, disk full,
        no permission, another process saving the same step at the same time), named
        with its path, after the temporary directory has been removed.
    """
    with _argument_errors_as_checkpoint_errors():
        step = check_int(step, "step", minimum=0)
        keep = check_int(keep, "keep", minimum=1, none_ok=True)
    ckpt_dir = Path(ckpt_dir)
    final = step_dir(ckpt_dir, step)
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
        arr, meta = leaf_to_numpy(path, leaf)
        tensors[name] = arr
        entries.append({"path": path, "name": name, **meta})

    data = safetensors.numpy.save(tensors)
    sha = hashlib.sha256(data).hexdigest()
    manifest_bytes = build_manifest(step, data, sha, treedef, entries, extra)
    if jax.process_index() == 0:
        write_atomically(ckpt_dir, final, data, manifest_bytes, overwrite=overwrite)
        if keep is not None:
            prune(ckpt_dir, keep, protect=step)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"fnet.checkpoint.save:{final}")
    return final


def _resolve_step(ckpt_dir: Path, step: int | None) -> int:
    with _argument_errors_as_checkpoint_errors():
        step = check_int(step, "step", minimum=0, none_ok=True)
    if step is None:
        step = latest_step(ckpt_dir)
        if step is None:
            raise CheckpointError(
                f"no checkpoint in {ckpt_dir} (no step_<digits>/ directory with "
                f"{MANIFEST_FILE}). Check the path, or call latest_step() first and start "
                "fresh when it returns None."
            )
    return int(step)


def read_manifest(ckpt_dir: str | os.PathLike[str], *, step: int | None = None) -> dict[str, Any]:
    """Read and validate the JSON manifest of checkpoint ``step`` (default: the latest).

    Useful before :func:`restore`, e.g. to rebuild the model from ``manifest["extra"]``
    (its configuration) and so obtain the ``like`` structure. Keys: ``step`` (int),
    ``leaves`` (list of ``{"path", "name", "shape", "dtype"[, "key_impl"]}``), ``extra``,
    ``versions``, ``arrays_sha256``, ``arrays_bytes``, ``format``, ``format_version``.

    Raises:
      CheckpointError: ``step`` is not ``None`` or an int >= 0; no checkpoint; the step
        directory is a symlink out of ``ckpt_dir``; the manifest is missing, a symlink,
        not a regular file, larger than :data:`MAX_MANIFEST_BYTES` (64 MiB), not JSON,
        holds an integer of more than 40 digits, or does not follow the schema; or an OS
        error reading it.
    """
    ckpt_dir = Path(ckpt_dir)
    step = _resolve_step(ckpt_dir, step)
    path = checked_step_dir(ckpt_dir, step) / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        steps = all_steps(ckpt_dir)
        raise CheckpointError(
            f"no checkpoint for step {step}: {path} does not exist. "
            f"Available steps in {ckpt_dir}: {steps or 'none'}."
        )
    raw = read_regular(path, max_size=MAX_MANIFEST_BYTES)
    return parse_manifest(path, raw, step)


def _describe(shape: Any, dtype: str) -> str:
    return f"shape {tuple(shape)} dtype {dtype}"


def _like_spec(path: str, leaf: Any) -> tuple[tuple[int, ...], str]:
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        raise CheckpointError(
            f"`like` leaf {path!r} is a {type(leaf).__name__}, not an array or "
            "jax.ShapeDtypeStruct; build `like` with jax.eval_shape or from real arrays."
        )
    dtype = leaf.dtype
    name = str(dtype) if is_key_dtype(dtype) else np.dtype(dtype).name
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
      CheckpointError: no checkpoint (use :func:`latest_step` to branch); any reason of
        :func:`read_manifest`; ``arrays.safetensors`` is a symlink, not a regular file,
        not of the size the manifest records, or fails its SHA-256 (the file is named);
        an OS error reading it; or ``like`` differs from the checkpoint in a path, shape
        or dtype (the first mismatching path and both sides are named).
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir, step=step)
    step = manifest["step"]
    where = checked_step_dir(ckpt_dir, step)
    entries: list[dict[str, Any]] = manifest["leaves"]

    like_with_path, like_treedef = jax.tree_util.tree_flatten_with_path(like)
    like_paths = [jax.tree_util.keystr(p) for p, _ in like_with_path]
    like_specs = [
        _like_spec(p, leaf) for p, (_, leaf) in zip(like_paths, like_with_path, strict=True)
    ]
    _check_structure(f"checkpoint {where}", entries, like_paths, like_specs)

    arrays_path = where / ARRAYS_FILE
    # Type and size are checked before a byte is read: a symlink to /dev/zero or a huge
    # sparse file is refused at once, and memory is bounded by the recorded size.
    data = read_regular(arrays_path, size=manifest["arrays_bytes"])
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
        dtype = TAG_TO_DTYPE.get(view["dtype"])
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
