"""The non-finite guard of ``fit``: stop (or warn) at the first epoch that produced NaN/inf.

After each epoch ``fit`` checks the epoch's metrics (loss, objective, ...: sums over
its steps, so one non-finite step makes them non-finite) and every floating-point leaf
of the params and model state. The epoch and its range of optimizer steps are named;
which step first went wrong is not recorded (the metrics are summed on the device).

By default the first non-finite epoch raises :class:`NonFiniteError`, before any hook
runs or checkpoint is written for it, so the checkpoint directory's newest checkpoint is
the last finite one.
``fit(..., on_nonfinite="warn")`` issues a :class:`NonFiniteWarning` instead and goes on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnet.errors import FnetError

__all__ = ["NonFiniteError", "NonFiniteWarning", "describe_nonfinite"]


class NonFiniteError(FnetError, FloatingPointError):
    """``fit`` produced a NaN or infinite loss or parameter.

    Attributes:
      epoch: the 1-based epoch that produced it.
      steps: ``(first, last)`` 1-based optimizer steps of that epoch (cumulative).
      history: ``fit``'s history including that epoch (its metrics show the NaN).
      result: the :class:`~fnet.train.fit.FitResult` after the last finite epoch (the
        inputs if the first epoch failed), with ``history`` up to that epoch.
    """

    def __init__(
        self, message: str, *, epoch: int, steps: tuple[int, int], history: Any, result: Any
    ) -> None:
        super().__init__(message)
        self.epoch, self.steps, self.history, self.result = epoch, steps, history, result


class NonFiniteWarning(RuntimeWarning):
    """Issued by ``fit(..., on_nonfinite="warn")`` for each non-finite epoch."""


def describe_nonfinite(
    epoch: int,
    metrics: dict[str, Any],
    params_finite: bool,
    state_finite: bool,
    *,
    steps: tuple[int, int],
) -> str | None:
    """A message naming what is not finite after ``epoch``, or ``None`` if all is finite.

    Args:
      epoch: 1-based epoch.
      metrics: the epoch's metrics (means over its steps; a NaN or inf in any step makes
        the mean non-finite), host floats or arrays.
      params_finite, state_finite: whether every float leaf of the params / model state
        is finite (:meth:`fnet.train.engine.EpochEngine.finite`, computed inside the
        epoch's compiled code).
      steps: ``(first, last)`` cumulative 1-based optimizer steps of the epoch.
    """
    problems = [
        f"mean {name} is {float(np.max(v))}"
        for name, v in metrics.items()
        if not np.all(np.isfinite(np.asarray(v, np.float64)))
    ]
    if not params_finite:
        problems.append("the params hold NaN/inf")
    if not state_finite:
        problems.append("the model state holds NaN/inf")
    if not problems:
        return None
    return f"epoch {epoch} (optimizer steps {steps[0]}-{steps[1]}): " + "; ".join(problems)
