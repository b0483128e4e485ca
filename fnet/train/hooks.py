"""Hooks called by ``fit`` between epochs: ``hook(epoch, params, state)``.

A hook is any callable ``hook(epoch, params, state)``; ``epoch`` is 1-based. A hook that
also takes a keyword-only ``history`` parameter gets ``fit``'s history so far (the dict
``fit`` returns, this epoch included; read it, do not modify it), which is how
:class:`~fnet.train.callbacks.EarlyStopping` and the metric loggers see the metrics.

A hook stops training by returning a :class:`StopTraining`; ``fit`` then finishes the
epoch's bookkeeping (the other hooks still run, a checkpoint is saved if
``checkpoint_dir`` is set) and returns normally. Any other return value is ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

from fnet._checks import check_int

__all__ = ["Hook", "StopTraining", "every_k_epochs", "takes_history"]

Hook: TypeAlias = Callable[..., Any]


class StopTraining(NamedTuple):
    """Returned by a hook to ask ``fit`` to stop after the current epoch.

    Attributes:
      reason: a short text recorded as ``history["stopped"]`` and in the checkpoint.
      params, state: if not ``None``, ``fit`` returns these instead of the last epoch's
        (e.g. the best epoch's params kept by early stopping); the returned
        ``opt_state`` is always the last epoch's.
    """

    reason: str = "stopped by a hook"
    params: Any = None
    state: Any = None


def takes_history(hook: Hook) -> bool:
    """True if ``hook`` accepts a keyword argument ``history`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("history")
    if p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
        return True
    return any(q.kind is q.VAR_KEYWORD for q in params.values())


def every_k_epochs(k: int, hook: Hook) -> Hook:
    """Wrap ``hook`` so that it runs only after epochs ``k, 2k, 3k, ...`` (1-based).

    E.g. ``fit(..., on_epoch_end=every_k_epochs(5, track))`` calls ``track(epoch, params, state)``
    after epochs 5, 10, ... A wrapped hook that takes ``history`` still gets it, and its
    :class:`StopTraining` is passed through.

    Raises:
      TypeError: ``k`` is not an int (``True`` is not).
      ValueError: ``k < 1``.
    """
    k = check_int(k, "every_k_epochs: k", minimum=1)
    wants_history = takes_history(hook)

    def wrapped(epoch: int, params: Any, state: Any, *, history: Any = None) -> Any:
        if epoch % k != 0:
            return None
        if wants_history:
            return hook(epoch, params, state, history=history)
        return hook(epoch, params, state)

    return wrapped
