"""One optimizer step: ``TrainState`` and :func:`train_step`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnet.train.objective import Metrics, Objective

__all__ = ["StepFn", "TrainState", "train_step"]


class TrainState(NamedTuple):
    """Everything that changes during training: one pytree, the carry of an epoch.

    Attributes:
      params: the trainable parameters (nested dicts of arrays).
      state: the model's non-trainable state (``{}`` for stateless models).
      opt_state: the optax optimizer state.
      step: int32 scalar, the number of optimizer steps taken.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array

    @classmethod
    def create(
        cls,
        params: Any,
        optimizer: optax.GradientTransformation,
        *,
        state: Any = None,
        opt_state: Any = None,
    ) -> TrainState:
        """A fresh state: ``opt_state`` defaults to ``optimizer.init(params)``, ``state``
        to ``{}``, ``step`` to 0."""
        return cls(
            params=params,
            state={} if state is None else state,
            opt_state=optimizer.init(params) if opt_state is None else opt_state,
            step=jnp.zeros((), jnp.int32),
        )


StepFn = Callable[[TrainState, jax.Array, jax.Array, Any], tuple[TrainState, Metrics]]


def make_step(objective: Objective, optimizer: optax.GradientTransformation) -> StepFn:
    """The un-jitted pure step (what ``fit`` scans over); see :func:`train_step`."""
    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(ts: TrainState, x, y, key) -> tuple[TrainState, Metrics]:
        (loss, (new_state, metrics)), grads = grad_fn(ts.params, ts.state, x, y, key)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        metrics = {**metrics, "objective": loss}
        return TrainState(params, new_state, opt_state, ts.step + 1), metrics

    return step


def train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    donate: bool = False,
) -> StepFn:
    """A pure train step ``step(train_state, x, y, key) -> (train_state, metrics)``.

    Computes ``(loss, (new_state, metrics)), grads = value_and_grad(objective)(params,
    state, x, y, key)``, then ``updates, opt_state = optimizer.update(grads, opt_state,
    params)`` and ``params = optax.apply_updates(params, updates)``. Works with any optax
    ``GradientTransformation`` (``optax.sgd(lr)``, ``optax.sgd(lr, momentum=0.9)``,
    ``optax.adam(lr)``, chains, schedules).

    Args:
      objective: an :class:`~fnet.train.objective.Objective`.
      optimizer: an optax ``GradientTransformation``.
      jit: return ``jax.jit(step)`` (default) or the plain pure function.
      donate: with ``jit``, donate the input ``train_state``'s buffers (use only as
        ``ts, m = step(ts, ...)``: the old ``ts`` is invalid afterwards).

    Returns:
      ``step(train_state, x, y, key)``: ``x`` ``(B, ...)``, ``y`` ``(B, ...)`` one batch,
      ``key`` a PRNG key (for dropout). ``metrics`` are the objective's metrics plus
      ``"objective"`` (the differentiated loss), all scalars.
    """
    step = make_step(objective, optimizer)
    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0,) if donate else ())
