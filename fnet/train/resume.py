"""Checkpoints inside ``fit``: save after epochs, resume only the same run, restore params.

Layout
------
A ``fit`` checkpoint (:mod:`fnet.checkpoint`, step = epochs completed) holds the tree::

    {"params": params, "state": state, "step": int32 optimizer steps, "key": fit's key,
     "opt_state": {"<optax pytree path>": leaf, ...}}

(the optimizer state flattened to a dict keyed by each leaf's pytree path, so every leaf
path in the file is a chain of dict keys and :func:`restore_params` can rebuild the tree
from the manifest alone, without the optimizer or the model). Its ``extra`` is::

    {"fit": {"layout": 2, "run_id": str, "epochs": int, "finite": bool,
             "stopped": str | None, "fingerprint": {section: {path: value}}},
     "history": {...}, "model": describe(model) or None, "extra": the user's extra}

Epoch ``e`` draws all its randomness from ``fold_in(key, e)``, so the train state after
``e`` epochs and the original key are all a resumed run needs to continue bit-identically.

Resume that cannot lie
----------------------
The fingerprint (:func:`run_fingerprint`) records what defines the run: the model
(structure, layer kinds and configuration, code), the objective (loss and penalty), the
optimizer (:mod:`fnet.train.fingerprint` reads its hyperparameters from its closures,
and from ``optax.inject_hyperparams`` state), the data shapes and dtypes, batch size,
remainder, key and the user's ``extra``. A checkpoint whose fingerprint differs is
refused with a :class:`~fnet.errors.CheckpointError` naming the differences, unless
``resume="force"`` (continue it anyway) or ``resume="fresh"`` (start over there: the old
checkpoints are deleted when the first new one is saved).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from fnet import checkpoint, core
from fnet._checks import check_int
from fnet.errors import CheckpointError
from fnet.train import fingerprint as fp
from fnet.train.step import TrainState

__all__ = [
    "FitCheckpoints",
    "RestoredParams",
    "Resume",
    "check_every",
    "restore_params",
    "run_fingerprint",
]

PathLike: TypeAlias = str | os.PathLike[str]
Resume: TypeAlias = Literal["auto", "fresh", "force"]
RESUME_MODES: tuple[str, ...] = ("auto", "fresh", "force")
LAYOUT = 2


def check_every(every: Any, keep: Any) -> None:
    """Check that ``every`` (epochs) is an int >= 1 and ``keep`` None or an int >= 1.

    Raises:
      TypeError: either is not an int (``keep`` not ``None`` or an int).
      ValueError: either is below 1.
    """
    check_int(every, "fit: every (epochs)", minimum=1)
    check_int(keep, "fit: keep", minimum=1, none_ok=True)


def _shape_dtype(a: Any) -> str:
    return f"{tuple(np.shape(a))} {np.dtype(getattr(a, 'dtype', np.asarray(a).dtype)).name}"


def run_fingerprint(
    objective: Any,
    optimizer: Any,
    opt_state: Any,
    x: Any,
    y: Any,
    *,
    batch_size: int,
    remainder: str,
    key: jax.Array,
    extra: Any = None,
) -> dict[str, dict[str, str]]:
    """What defines a ``fit`` run, as JSON-able sections of ``{path: value}`` strings.

    Sections: ``model`` (``fnet.core.describe`` of ``objective.model``, when the
    objective exposes one: layer kinds and configuration, readable) and ``model_code``
    (the model's functions and closures; else both are empty and the model is compared
    as part of ``objective``, through the closure),
    ``objective`` (the objective's fields or closure: loss, penalty, options),
    ``optimizer`` (:func:`fnet.train.fingerprint.describe_value` of the transformation),
    ``hyperparams`` (``inject_hyperparams`` values of ``opt_state``), ``data`` (shapes and
    dtypes of ``x`` and ``y``; the values are NOT compared), ``batching`` (batch size,
    remainder), ``key`` and ``extra`` (the user's dict). See :mod:`fnet.train.fingerprint`
    for what each records and what it cannot see.
    """
    model = getattr(objective, "model", None)
    objective_desc = fp.describe_value(objective)
    model_desc: dict[str, str] = {}
    model_code: dict[str, str] = {}
    if model is not None:  # compared once, in its own sections
        description = model_description(objective)
        model_desc = {} if description is None else fp.describe_value(description)
        model_code = fp.describe_value(model)
        objective_desc = {k: v for k, v in objective_desc.items() if not k.startswith(".model")}
    return {
        "model": model_desc,
        "model_code": model_code,
        "objective": objective_desc,
        "optimizer": fp.describe_value(optimizer),
        "hyperparams": fp.hyperparams(opt_state),
        "data": {"x": _shape_dtype(x), "y": _shape_dtype(y)},
        "batching": {"batch_size": str(batch_size), "remainder": remainder},
        "key": {"key": fp.describe_value(key)["."]},
        "extra": fp.describe_value(extra),
    }


def model_description(objective: Any) -> Any:
    """``fnet.core.describe(objective.model)`` when both exist (JSON-able), else ``None``."""
    model = getattr(objective, "model", None)
    describe = getattr(core, "describe", None)
    if model is None or describe is None:
        return None
    return describe(model)


def _run_id(fingerprint: dict[str, Any]) -> str:
    blob = json.dumps(fingerprint, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _flat(tree: Any) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _unflat(flat: dict[str, Any], like: Any) -> Any:
    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in paths])


def _tree(ts: TrainState, key: jax.Array) -> dict[str, Any]:
    return {"params": ts.params, "state": ts.state, "opt_state": _flat(ts.opt_state),
            "step": ts.step, "key": key}  # fmt: skip


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _delete_steps(ckpt_dir: Path, steps: list[int]) -> None:
    """Delete whole checkpoint directories (renamed away first, so none is half-deleted)."""
    if jax.process_index() != 0:
        return
    for s in steps:
        src = ckpt_dir / f"step_{s:09d}"
        trash = ckpt_dir / f".tmp-fit-delete-{uuid.uuid4().hex}"
        try:
            os.rename(src, trash)
        except FileNotFoundError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


class FitCheckpoints:
    """The checkpoints of one ``fit`` call: resume checks, saving, safe pruning.

    Created by ``fit`` for its ``checkpoint_dir``; not needed by users (see
    :func:`restore_params` and :mod:`fnet.checkpoint` to read the files).

    Args:
      ckpt_dir: the directory (created at the first save).
      fingerprint: :func:`run_fingerprint` of this call.
      epochs: the ``epochs`` asked for.
      every, keep: save every ``every`` epochs and after the last; keep the newest
        ``keep`` of this run (``None``: all), and always the newest one whose params and
        loss were finite.
      resume: ``"auto"``: resume a checkpoint of the same run, refuse another run;
        ``"force"``: resume the latest checkpoint even if its fingerprint differs (a line
        lists the differences; shapes must still match); ``"fresh"``: ignore the
        checkpoints there and start at epoch 0; they are deleted when the first new one
        is saved.
      model: ``describe(model)`` to store (or ``None``). extra: the user's JSON dict.
    """

    def __init__(
        self,
        ckpt_dir: PathLike,
        fingerprint: dict[str, dict[str, str]],
        *,
        epochs: int,
        every: int,
        keep: int | None,
        resume: Resume,
        model: Any = None,
        extra: Any = None,
    ) -> None:
        check_every(every, keep)
        if resume not in RESUME_MODES:
            raise ValueError(f"fit: resume must be one of {RESUME_MODES}, got {resume!r}")
        try:
            json.dumps(extra, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"fit: extra must be JSON-serialisable (numbers, strings, lists, dicts): {exc}"
            ) from exc
        self.dir = Path(ckpt_dir)
        self.fingerprint = fingerprint
        self.run_id = _run_id(fingerprint)
        self.epochs, self.every, self.keep, self.resume = epochs, every, keep, resume
        self.model, self.extra = model, extra
        self._discard: list[int] = []

    def _where(self, step: int) -> str:
        return f"checkpoint {step} in {os.fspath(self.dir)}"

    def _fit_info(self, step: int) -> dict[str, Any]:
        extra = checkpoint.read_manifest(self.dir, step=step)["extra"]
        info = extra.get("fit") if isinstance(extra, dict) else None
        if not isinstance(info, dict) or "history" not in extra:
            raise CheckpointError(
                f"{self._where(step)} was not written by fnet.train.fit, so fit will neither "
                "resume nor delete it. Pass another checkpoint_dir."
            )
        if info.get("layout") != LAYOUT or "fingerprint" not in info:
            raise CheckpointError(
                f"{self._where(step)} was written by an older fnet fit that recorded no run "
                "fingerprint, so fit cannot tell whether it is this run. Pass another "
                "checkpoint_dir, or resume='fresh' to start over there (deleting it)."
            )
        return info

    def _differences(self, saved: dict[str, Any]) -> list[str]:
        lines = []
        for section in dict.fromkeys([*saved, *self.fingerprint]):
            for line in fp.diff(saved.get(section, {}), self.fingerprint.get(section, {})):
                lines.append(f"{section}{'' if line.startswith(('.', '[')) else ' '}{line}")
        return lines

    def restore(
        self, train_state: TrainState, key: jax.Array
    ) -> tuple[int, TrainState, dict[str, Any] | None]:
        """Resume from the latest checkpoint of this run, if there is one.

        Returns ``(epochs_done, train_state, history)``: ``(0, train_state, None)`` for a
        new run; else the restored state (host arrays) and the history so far. Prints one
        line to stderr when it resumes (``fit: resuming from epoch 3 of 10 (DIR)``).

        Raises:
          CheckpointError: the directory holds another run (named differences), a
            checkpoint not written by fit, a run already past ``epochs``, or (with
            ``resume="force"``) a train state of other shapes. Nothing on disk changes.
        """
        steps = checkpoint.all_steps(self.dir)
        if not steps:
            return 0, train_state, None
        last = steps[-1]
        if self.resume == "fresh":
            for s in steps:  # refuse to delete anything fit did not write
                self._fit_info(s)
            self._discard = steps
            _say(f"fit: resume='fresh': starting at epoch 0; the {len(steps)} checkpoint(s) "
                 f"in {os.fspath(self.dir)} are deleted at the first save")  # fmt: skip
            return 0, train_state, None
        info = self._fit_info(last)
        diffs = self._differences(info["fingerprint"])
        if diffs and self.resume == "auto":
            raise CheckpointError(
                f"{self._where(last)} belongs to another run; resuming would not continue "
                f"it. Differences: {'; '.join(diffs)}. Pass another checkpoint_dir to start "
                "a new run, resume='fresh' to start over in this one (its checkpoints are "
                "deleted), or resume='force' if you know it is the same run."
            )
        if last > self.epochs:
            raise CheckpointError(
                f"{self._where(last)}: that run has already trained {last} epochs, more than "
                f"epochs={self.epochs}. Pass epochs >= {last} to continue it, read an earlier "
                "epoch with fnet.checkpoint.restore(..., step=...) if one is kept, or use "
                "another checkpoint_dir (or resume='fresh') for a new run."
            )
        if diffs:
            _say(f"fit: resume='force': resuming {self._where(last)} despite: {'; '.join(diffs)}")
        like = _tree(train_state, key)
        tree, extra = checkpoint.restore(self.dir, like, step=last)
        if self.resume == "force":
            self.run_id = info.get("run_id", self.run_id)  # the same run from now on
        history = extra["history"]
        ts = TrainState(
            tree["params"], tree["state"], _unflat(tree["opt_state"], train_state.opt_state),
            tree["step"],
        )  # fmt: skip
        if info.get("stopped"):
            _say(f"fit: {os.fspath(self.dir)} holds a run stopped at epoch {last} "
                 f"({info['stopped']}); nothing to train")  # fmt: skip
            return self.epochs, ts, history
        if last == self.epochs:
            _say(f"fit: {os.fspath(self.dir)} holds the complete run (epoch {last} of "
                 f"{self.epochs}); nothing to train")  # fmt: skip
        else:
            _say(f"fit: resuming from epoch {last} of {self.epochs} ({os.fspath(self.dir)})")
        return last, ts, history

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) is saved: every ``every`` and the last."""
        return epoch % self.every == 0 or epoch == self.epochs

    def save(
        self,
        epoch: int,
        train_state: TrainState,
        key: jax.Array,
        history: dict[str, Any],
        *,
        finite: bool = True,
        stopped: str | None = None,
    ) -> None:
        """Save the state after ``epoch`` epochs, then prune this run's old checkpoints.

        Pruning keeps the newest ``keep`` checkpoints of this run AND the newest one
        with ``finite=True``; checkpoints of other runs are never deleted. Collective on
        multi-host meshes (every process calls it; process 0 writes).
        """
        info = {
            "layout": LAYOUT,
            "run_id": self.run_id,
            "epochs": self.epochs,
            "finite": bool(finite),
            "stopped": stopped,
            "fingerprint": self.fingerprint,
        }
        extra = {"fit": info, "history": history, "model": self.model, "extra": self.extra}
        if self._discard:
            _delete_steps(self.dir, self._discard)
            self._discard = []
        checkpoint.save(self.dir, epoch, _tree(train_state, key), extra=extra, keep=None)
        if self.keep is not None:
            self._prune()

    def _prune(self) -> None:
        assert self.keep is not None
        mine: list[tuple[int, bool]] = []
        for s in checkpoint.all_steps(self.dir):
            extra = checkpoint.read_manifest(self.dir, step=s)["extra"]
            info = extra.get("fit") if isinstance(extra, dict) else None
            if isinstance(info, dict) and info.get("run_id") == self.run_id:
                mine.append((s, bool(info.get("finite", True))))
        keep = {s for s, _ in mine[-self.keep :]}
        finite = [s for s, ok in mine if ok]
        if finite:
            keep.add(finite[-1])
        _delete_steps(self.dir, [s for s, _ in mine if s not in keep])


# --------------------------------------------------------------------- restore_params

_SEGMENT = re.compile(r"\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?\d+)\]")


def _parse_path(path: str, where: str) -> list[str | int]:
    keys: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            raise CheckpointError(
                f"{where}: leaf path {path!r} is not a chain of dict keys and list indices, "
                "so restore_params cannot rebuild its tree; use fnet.checkpoint.restore "
                "with a `like` tree instead."
            )
        keys.append(ast.literal_eval(m.group(1)))
        pos = m.end()
    return keys


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v) for k, v in node.items()}
    if out and all(isinstance(k, int) for k in out):
        if sorted(out) != list(range(len(out))):
            raise CheckpointError(f"list indices {sorted(out)} are not 0..{len(out) - 1}")
        return [out[i] for i in range(len(out))]
    return out


def _like_from_manifest(manifest: dict[str, Any], where: str) -> Any:
    root: dict[Any, Any] = {}
    for e in manifest["leaves"]:
        keys = _parse_path(e["path"], where)
        if not keys:
            raise CheckpointError(f"{where}: the checkpoint is a single array, not a tree")
        if "key_impl" in e:
            dtype = jax.random.key(0, impl=e["key_impl"]).dtype
        else:
            dtype = jnp.dtype(e["dtype"])
        node = root
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = jax.ShapeDtypeStruct(tuple(e["shape"]), dtype)
    return _listify(root)


class RestoredParams(NamedTuple):
    """What :func:`restore_params` returns.

    Attributes:
      params: the params (nested dicts of host NumPy arrays).
      state: the model state (``{}`` for a stateless model or a checkpoint without one).
      step: the checkpoint's step (epochs done for a ``fit`` checkpoint).
      model: the model description ``fit`` stored (``fnet.core.describe``), or ``None``.
      extra: the user's ``extra`` passed to ``fit`` (or the whole ``extra`` of a
        checkpoint not written by ``fit``).
      history: the ``fit`` history up to ``step`` (``None`` for other checkpoints).
    """

    params: Any
    state: Any
    step: int
    model: Any
    extra: Any
    history: Any


def restore_params(ckpt_dir: PathLike, *, step: int | None = None) -> RestoredParams:
    """Load the params (and model state) of a checkpoint without the optimizer or model.

    Works on every checkpoint ``fit`` writes, and on any :func:`fnet.checkpoint.save` of a
    tree of dicts and lists with a ``"params"`` key. The tree structure is rebuilt from
    the manifest (every leaf path is a chain of dict keys); the optimizer state is read
    and checked (sha256) but not returned. To rebuild the model, read
    ``restored.model`` (what ``fnet.core.describe`` recorded) or keep your own config in
    ``fit(..., extra={...})``.

    Args:
      ckpt_dir: a checkpoint directory. step: the step (default: the latest).

    Returns:
      :class:`RestoredParams` ``(params, state, step, model, extra, history)``; arrays are
      host ``np.ndarray`` with the saved shapes and dtypes (``jax.device_put`` them).

    Raises:
      CheckpointError: no checkpoint, a corrupt file, no ``"params"`` in the tree, or a
        leaf path that is not made of dict keys/list indices (then use
        ``fnet.checkpoint.restore`` with a ``like`` tree).
    """
    manifest = checkpoint.read_manifest(ckpt_dir, step=step)
    where = f"checkpoint {manifest['step']} in {os.fspath(ckpt_dir)}"
    like = _like_from_manifest(manifest, where)
    if not isinstance(like, dict) or "params" not in like:
        raise CheckpointError(
            f"{where} holds no 'params' entry (top-level keys: "
            f"{sorted(like) if isinstance(like, dict) else type(like).__name__}); use "
            "fnet.checkpoint.restore with a `like` tree."
        )
    tree, extra = checkpoint.restore(ckpt_dir, like, step=manifest["step"])
    is_fit = isinstance(extra, dict) and isinstance(extra.get("fit"), dict)
    return RestoredParams(
        params=tree["params"],
        state=tree.get("state", {}),
        step=manifest["step"],
        model=extra.get("model") if is_fit else None,
        extra=extra.get("extra") if is_fit else extra,
        history=extra.get("history") if is_fit else None,
    )
