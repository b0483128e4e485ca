"""The non-finite guard of ``fit``: stop (or warn) at the first epoch that produced NaN/inf.

After each epoch ``fit`` checks every per-step metric (loss, objective, ...) and every
floating-point leaf of the params and model state. By default the first non-finite epoch
raises :class:`NonFiniteError`, before any hook runs or checkpoint is written for it, so
the checkpoint directory's newest checkpoint is the last finite one.
``fit(..., on_nonfinite="warn")`` issues a :class:`NonFiniteWarning` instead and goes on.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet.errors import FnetError

__all__ = ["NonFiniteError", "NonFiniteWarning", "all_finite", "describe_nonfinite"]


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


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """``True`` (a bool scalar) if every float/complex leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(a).dtype, jnp.inexact)]  # fmt: skip
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def describe_nonfinite(
    epoch: int,
    step_metrics: dict[str, np.ndarray],
    params_finite: bool,
    state_finite: bool,
    first_step: int,
) -> str | None:
    """A message naming what is not finite after ``epoch``, or ``None`` if all is finite.

    Args:
      epoch: 1-based epoch. step_metrics: per-step host arrays ``(n_steps,)``.
      params_finite, state_finite: results of :func:`all_finite`.
      first_step: the cumulative 1-based index of the epoch's first step.
    """
    problems = []
    for name, values in step_metrics.items():
        v = np.asarray(values, np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            i = int(bad[0])
            problems.append(f"{name} is {v[i]} at step {first_step + i}")
    if not params_finite:
        problems.append("the params hold NaN/inf")
    if not state_finite:
        problems.append("the model state holds NaN/inf")
    if not problems:
        return None
    last = first_step + max(len(np.reshape(v, -1)) for v in step_metrics.values()) - 1
    return f"epoch {epoch} (optimizer steps {first_step}-{last}): " + "; ".join(problems)
