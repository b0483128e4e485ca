"""Per-epoch metric logs written while ``fit`` trains: JSON Lines, CSV, TensorBoard.

Each logger is a ``fit`` hook (:mod:`fnet.train.hooks`): pass it in ``on_epoch_end``.
After every epoch it writes that epoch's row of the history (every per-epoch entry:
``epoch``, ``steps``, ``train_loss``, ``val_accuracy``, ``epoch_time``, ...) and
flushes, so a crashed or running job's log is complete up to the last epoch. The file
always mirrors the history: when ``fit`` resumes from a checkpoint, the first call
rewrites the file from the resumed history, so no epoch is lost or written twice.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["CSVLogger", "JSONLLogger", "TensorBoardLogger", "history_rows"]


def history_rows(history: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch rows of a ``fit`` history: ``[{"epoch": 1, "train_loss": ...}, ...]``.

    Only the per-epoch lists are used (scalars like ``compile_time`` are left out); a
    metric missing from an epoch is left out of that row.
    """
    lists = {k: v for k, v in history.items() if isinstance(v, list)}
    n = len(lists.get("epoch", []))
    return [{k: v[i] for k, v in lists.items() if i < len(v)} for i in range(n)]


def _json_value(v: Any) -> Any:
    # JSON has no NaN/inf: write them as null (the row still has one line per epoch).
    return None if isinstance(v, float) and not math.isfinite(v) else v


class _FileLogger:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{type(self).__name__}: {self.path} is a directory")
        self._written = -1  # rows written by this logger (-1: file not started by us)

    def __call__(self, epoch: int, params: Any, state: Any, *, history: Any = None) -> None:
        del epoch, params, state
        rows = history_rows(history or {})
        if self._written >= 0 and self._written == len(rows) - 1 and self._same_columns(rows):
            self._append(rows[-1])
        else:
            self._rewrite(rows)
        self._written = len(rows)

    def _same_columns(self, rows: list[dict[str, Any]]) -> bool:
        return True

    def _append(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError


class JSONLLogger(_FileLogger):
    """Write ``fit``'s history as JSON Lines: one JSON object per epoch, flushed each epoch.

    ``fit(..., on_epoch_end=JSONLLogger("run/metrics.jsonl"))``. Read it back with
    ``[json.loads(line) for line in open(path)]`` or ``pandas.read_json(path, lines=True)``.
    Non-finite floats are written as ``null`` (JSON has no NaN).

    Args:
      path: the file (its directory is created; an existing file is replaced at the
        first epoch of a new run, and rewritten from the history when ``fit`` resumes).
    """

    def _append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
            f.flush()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
            f.flush()


class CSVLogger(_FileLogger):
    """Write ``fit``'s history as CSV: a header, then one row per epoch, flushed each epoch.

    Columns are the history's per-epoch keys in order (``epoch, steps, examples_seen,
    epoch_time, wall_time, train_loss, ...``); if a later epoch brings a new key, the file
    is rewritten with the wider header. NaN is written as ``nan``.

    Args:
      path: the file (its directory is created; see :class:`JSONLLogger` for resuming).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._columns: list[str] = []

    def _same_columns(self, rows: list[dict[str, Any]]) -> bool:
        return list(rows[-1]) == self._columns

    def _append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, self._columns).writerow(row)
            f.flush()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        self._columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
            f.flush()


class TensorBoardLogger:
    """Write each epoch's metrics as TensorBoard scalars (needs the ``tensorboardX`` package).

    ``fit(..., on_epoch_end=TensorBoardLogger("runs/mnist"))`` then
    ``tensorboard --logdir runs``. Every numeric per-epoch history entry except
    ``epoch`` is written with ``add_scalar(name, value, global_step=epoch)`` by
    ``tensorboardX.SummaryWriter`` (fnet does not write the event format itself) and
    flushed after each epoch. Install with ``pip install "fnet[tensorboard]"``. On
    resume, the epochs already in the history are not written again (TensorBoard shows
    the events of both processes).

    Args:
      logdir: the run's directory.

    Raises:
      ImportError: ``tensorboardX`` is not installed (at construction, before ``fit``).
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoardLogger needs tensorboardX: pip install 'fnet[tensorboard]' "
                "(or pip install tensorboardX)"
            ) from exc
        self.logdir = os.fspath(logdir)
        self.writer = SummaryWriter(self.logdir)

    def __call__(self, epoch: int, params: Any, state: Any, *, history: Any = None) -> None:
        del params, state
        rows = history_rows(history or {})
        if not rows:
            return
        for k, v in rows[-1].items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, float(v), global_step=epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (also safe to leave to the garbage collector)."""
        self.writer.close()
