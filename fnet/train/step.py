"""One optimizer step: ``TrainState`` and :func:`train_step`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fnet import _xla, distributed
from fnet.train.objective import Metrics, Objective

__all__ = ["ShardedObjective", "StepFn", "TrainState", "sharded_objective", "train_step"]


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


@dataclasses.dataclass(frozen=True)
class ShardedObjective:
    """An objective whose batch is split over the data axis of ``mesh`` at every step.

    ``ShardedObjective(objective, mesh)(params, state, x, y, key, **kw)`` constrains
    ``x`` and ``y`` with :func:`fnet.distributed.constrain_batch` and calls ``objective``.
    Frozen and compared by value, so two wrappers of the same objective on the same mesh
    hit the same compiled code.
    """

    objective: Callable[..., Any]
    mesh: Mesh

    def __call__(self, params: Any, state: Any, x: Any, y: Any, key: Any, **kwargs: Any):
        x, y = distributed.constrain_batch((x, y), self.mesh)
        return self.objective(params, state, x, y, key, **kwargs)


def sharded_objective(objective: Objective, mesh: Mesh) -> ShardedObjective:
    """``objective`` with each batch split over ``mesh``'s data axis (:class:`ShardedObjective`)."""
    return ShardedObjective(objective, distributed.as_auto(mesh))


def make_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    dedupe_objective: bool = False,
) -> StepFn:
    """The un-jitted pure step (what ``fit`` runs); see :func:`train_step`.

    With ``dedupe_objective``, the ``"objective"`` metric is left out when the objective's
    ``"loss"`` metric is the very value differentiated (no penalty): ``fit`` then reports
    one as the other instead of carrying the same number twice.
    """
    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(ts: TrainState, x, y, key) -> tuple[TrainState, Metrics]:
        (loss, (new_state, metrics)), grads = grad_fn(ts.params, ts.state, x, y, key)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        if not (dedupe_objective and metrics.get("loss") is loss):
            metrics = {**metrics, "objective": loss}
        return TrainState(params, new_state, opt_state, ts.step + 1), metrics

    return step


def train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    donate: bool = False,
    mesh: Mesh | None = None,
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
      jit: return the step jitted (default) or the plain pure function. Jitted, it is
        ``jax.jit(step)`` compiled with fnet's per-program compiler options (on CPU a
        step with convolutions runs them with XLA's Eigen kernels: ``fnet._xla``).
      donate: with ``jit``, donate the input ``train_state``'s buffers (use only as
        ``ts, m = step(ts, ...)``: the old ``ts`` is invalid afterwards).
      mesh: a ``jax.sharding.Mesh`` for data parallelism (``docs/parallel.md``): each
        batch is split over the mesh's data axis, and the new train state keeps
        :func:`fnet.distributed.param_shardings` (place the initial one with
        :func:`fnet.distributed.place`; on several hosts pass global batches from
        :func:`fnet.distributed.global_batch`). Needs ``jit``.

    Returns:
      ``step(train_state, x, y, key)``: ``x`` ``(B, ...)``, ``y`` ``(B, ...)`` one batch,
      ``key`` a PRNG key (for dropout). ``metrics`` are the objective's metrics plus
      ``"objective"`` (the differentiated loss), all scalars.
    """
    if mesh is None:
        step = make_step(objective, optimizer)
        if not jit:
            return step
        return _xla.ConvAwareJit(step, donate_argnums=(0,) if donate else ())
    if not jit:
        raise ValueError("train_step: mesh= needs jit=True (shardings are fixed by jax.jit)")
    mesh = distributed.as_auto(mesh)
    inner = make_step(sharded_objective(objective, mesh), optimizer)

    def sharded_step(ts: TrainState, x, y, key) -> tuple[TrainState, Metrics]:
        ts, metrics = inner(ts, x, y, key)
        ts = jax.lax.with_sharding_constraint(ts, distributed.param_shardings(ts, mesh))
        return ts, jax.lax.with_sharding_constraint(metrics, distributed.replicated(mesh))

    return _xla.ConvAwareJit(sharded_step, donate_argnums=(0,) if donate else ())
