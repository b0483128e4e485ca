"""Checkpoints inside ``fit``: save after epochs, resume from the latest one.

A ``fit`` checkpoint (:mod:`fnet.checkpoint`, step = epochs completed) holds the tree
``{"train_state": TrainState(params, state, opt_state, step), "key": key}`` and in
``extra`` the history so far and the fit's configuration. Epoch ``e`` draws all its
randomness from ``fold_in(key, e)``, so the train state after ``e`` epochs and the
original key are all a resumed run needs to continue bit-identically.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from fnet import checkpoint
from fnet.errors import CheckpointError
from fnet.train.step import TrainState

__all__ = ["check_every", "fit_config", "restore", "save"]

PathLike = str | os.PathLike[str]


def check_every(every: Any, keep: Any) -> None:
    """Raise ``ValueError`` unless ``every`` is a positive int (``keep`` is checked by save)."""
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"fit: every must be a positive int (epochs), got {every!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"fit: keep must be None or an int >= 1, got {keep!r}")


def fit_config(n: int, batch_size: int, remainder: str) -> dict[str, Any]:
    """What must not change between a run and its resumption (the data order depends on it)."""
    return {"n_examples": n, "batch_size": batch_size, "remainder": remainder}


def _key_data(key: jax.Array) -> np.ndarray:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def restore(
    ckpt_dir: PathLike, train_state: TrainState, key: jax.Array, config: dict[str, Any]
) -> tuple[int, TrainState, dict[str, Any] | None]:
    """Resume from the latest checkpoint in ``ckpt_dir``, if there is one.

    Args:
      ckpt_dir: the fit's checkpoint directory (may not exist yet).
      train_state: the fresh train state; gives the structure, shapes and dtypes.
      key: the fit's key; must equal the checkpoint's.
      config: :func:`fit_config` of this call; must equal the checkpoint's.

    Returns:
      ``(epochs_done, train_state, history)``: ``(0, train_state, None)`` when there is no
      checkpoint; otherwise the restored state (host arrays) and history.

    Raises:
      CheckpointError: the checkpoint is of another model or optimizer (strict restore
        names the first mismatching leaf), another key, or another data configuration.
    """
    last = checkpoint.latest_step(ckpt_dir)
    if last is None:
        return 0, train_state, None
    like = {"train_state": train_state, "key": key}
    tree, extra = checkpoint.restore(ckpt_dir, like, step=last)
    where = f"checkpoint {last} in {os.fspath(ckpt_dir)}"
    if not isinstance(extra, dict) or "fit" not in extra or "history" not in extra:
        raise CheckpointError(f"{where} was not written by fnet.train.fit (no 'fit' in extra)")
    saved = extra["fit"]
    diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"{where} was written by a fit with other data settings ({detail}); resuming "
            "would not continue that run. Use the same settings or another checkpoint_dir."
        )
    if not np.array_equal(_key_data(tree["key"]), _key_data(key)):
        raise CheckpointError(
            f"{where} was written by a fit with another key; pass the same key to resume "
            "that run, or use another checkpoint_dir to start a new one."
        )
    return last, TrainState(*tree["train_state"]), extra["history"]


def save(
    ckpt_dir: PathLike,
    epochs_done: int,
    train_state: TrainState,
    key: jax.Array,
    history: dict[str, Any],
    config: dict[str, Any],
    *,
    keep: int | None,
) -> None:
    """Save the state after ``epochs_done`` epochs as checkpoint step ``epochs_done``.

    Collective on multi-host meshes (every process calls it; process 0 writes).
    """
    tree = {"train_state": train_state, "key": key}
    extra = {"fit": config, "history": history}
    checkpoint.save(ckpt_dir, epochs_done, tree, extra=extra, keep=keep)
