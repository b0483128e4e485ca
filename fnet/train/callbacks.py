"""Ready-made ``fit`` hooks: early stopping and keeping the best params.

Both read a metric from ``fit``'s history (a hook with a ``history`` keyword, see
:mod:`fnet.train.hooks`), e.g. ``"val_loss"`` (with ``fit(..., validation=...)``) or
``"train_loss"``. They follow Keras' ``EarlyStopping``/``ModelCheckpoint(save_best_only)``
conventions: ``mode="min"`` for losses, ``"max"`` for accuracies, ``"auto"`` guesses from
the name (``acc``/``accuracy`` -> max), ``min_delta`` is the smallest change that counts
as an improvement.

The decisions are computed from the history alone, so they survive a resumed ``fit``:
after resuming at epoch 5, early stopping knows the best epoch among 1..5.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import jax
import jax.numpy as jnp

from fnet import checkpoint
from fnet._checks import check_int
from fnet.train.hooks import StopTraining

__all__ = ["EarlyStopping", "KeepBest"]

Mode = Literal["min", "max", "auto"]


def _resolve_mode(monitor: str, mode: str) -> str:
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor) else "min"
    return mode


def _best_epoch(values: list[float], mode: str, min_delta: float) -> int:
    """0-based index of the best value; later values must beat it by ``min_delta``.

    Non-finite values never count as improvements.
    """
    best = -1
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        if best < 0:
            best = i
        elif (mode == "min" and v < values[best] - min_delta) or (
            mode == "max" and v > values[best] + min_delta
        ):
            best = i
    return best


def _metric(history: dict[str, Any] | None, monitor: str, who: str) -> list[float]:
    if history is None or monitor not in history:
        have = sorted(k for k, v in (history or {}).items() if isinstance(v, list))
        raise KeyError(
            f"{who}: metric {monitor!r} is not in fit's history (it has {have}); pass "
            "validation=(x_val, y_val) to fit for 'val_*' metrics, or monitor another."
        )
    return [float(v) for v in history[monitor]]


def _copy(tree: Any) -> Any:
    # fit donates the arrays of the epoch; keep a copy on the same device.
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


class KeepBest:
    """Keep the params of the best epoch by a metric (in memory, and on disk if asked).

    ``keep = KeepBest("val_loss"); fit(..., on_epoch_end=keep)``; afterwards
    ``keep.params``, ``keep.state``, ``keep.epoch`` (1-based) and ``keep.value`` are those
    of the best epoch of THIS ``fit`` call's epochs. With ``directory``, each new best is
    also saved there (:func:`fnet.checkpoint.save` of ``{"params", "state"}``, step = the
    epoch, ``extra={"monitor", "value", "epoch"}``, keeping only the newest), and read
    back with :func:`fnet.train.restore_params`. The directory must be KeepBest's own
    (one holding other checkpoints, e.g. fit's ``checkpoint_dir``, raises ``ValueError``
    instead of being pruned).

    Args:
      monitor: the history key, e.g. ``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``.
      mode: ``"min"``, ``"max"`` or ``"auto"`` (max if the name contains ``acc``).
      min_delta: an improvement must exceed this (in the metric's units).
      directory: optional checkpoint directory for the best params.

    Raises (when called by fit):
      KeyError: ``monitor`` is not in the history.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: Mode = "auto",
        min_delta: float = 0.0,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        if not min_delta >= 0:
            raise ValueError(f"KeepBest: min_delta must be >= 0, got {min_delta!r}")
        self.min_delta = float(min_delta)
        self.directory = directory
        self.params: Any = None
        self.state: Any = None
        self.epoch: int | None = None
        self.value: float | None = None

    def __call__(self, epoch: int, params: Any, state: Any, *, history: Any = None) -> None:
        """Record ``params``/``state`` if ``epoch`` is the best so far by the monitor."""
        values = _metric(history, self.monitor, "KeepBest")
        best = _best_epoch(values, self.mode, self.min_delta)
        if best != len(values) - 1:
            return
        self.params, self.state = _copy(params), _copy(state)
        self.epoch, self.value = int(history["epoch"][best]), values[best]
        if self.directory is not None:
            self._check_directory()
            checkpoint.save(
                self.directory,
                self.epoch,
                {"params": params, "state": state},
                extra={"monitor": self.monitor, "value": self.value, "epoch": self.epoch},
                keep=1,
                overwrite=True,
            )

    def _check_directory(self) -> None:
        """Refuse a directory holding checkpoints KeepBest did not write (it prunes)."""
        assert self.directory is not None
        for step in checkpoint.all_steps(self.directory):
            extra = checkpoint.read_manifest(self.directory, step=step)["extra"]
            if not (isinstance(extra, dict) and "monitor" in extra and "fit" not in extra):
                raise ValueError(
                    f"KeepBest: {os.fspath(self.directory)} holds checkpoint {step}, not "
                    "written by KeepBest; KeepBest keeps only its newest checkpoint there "
                    "and would delete it. Give KeepBest a directory of its own (not fit's "
                    "checkpoint_dir)."
                )


class EarlyStopping:
    """Stop ``fit`` when a metric has not improved for ``patience`` epochs.

    After each epoch: if the best value of ``monitor`` (over all epochs of the history,
    a resumed run's included) is more than ``patience`` epochs old, it returns
    :class:`~fnet.train.hooks.StopTraining`, and ``fit`` stops and returns normally,
    with ``history["stopped"]`` set. With ``restore_best=True`` ``fit`` returns the best
    epoch's params and state (a device copy is kept while training; if the best epoch
    came before a resume, it is not available and the last params are returned, with a
    note in the reason).

    Args:
      monitor: the history key, e.g. ``"val_loss"`` (default) or ``"val_accuracy"``.
      patience: epochs without improvement before stopping (``>= 0``; Keras' meaning).
      mode: ``"min"``, ``"max"`` or ``"auto"`` (max if the name contains ``acc``).
      min_delta: an improvement must exceed this.
      restore_best: return the best epoch's params instead of the last epoch's.

    Raises:
      TypeError: ``patience`` is not an int (``True`` is not).
      ValueError: ``patience < 0``, or a bad ``mode`` or ``min_delta``.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 3,
        mode: Mode = "auto",
        min_delta: float = 0.0,
        restore_best: bool = False,
    ) -> None:
        check_int(patience, "EarlyStopping: patience", minimum=0)
        self.monitor, self.patience = monitor, patience
        self._best = KeepBest(monitor, mode=mode, min_delta=min_delta)
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def __call__(
        self, epoch: int, params: Any, state: Any, *, history: Any = None
    ) -> StopTraining | None:
        """Return :class:`StopTraining` once ``patience`` epochs passed without a new best."""
        if self.restore_best:
            self._best(epoch, params, state, history=history)
        values = _metric(history, self.monitor, "EarlyStopping")
        best = _best_epoch(values, self._best.mode, self._best.min_delta)
        if best < 0:
            return None
        self.best_epoch = int(history["epoch"][best])
        if len(values) - 1 - best <= self.patience:
            return None
        self.stopped_epoch = epoch
        reason = (
            f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
            f"after its best {values[best]:.6g} at epoch {self.best_epoch}"
        )
        if not self.restore_best:
            return StopTraining(reason)
        if self._best.epoch != self.best_epoch:
            return StopTraining(reason + " (best params not kept: it came before a resume)")
        return StopTraining(reason, params=self._best.params, state=self._best.state)
