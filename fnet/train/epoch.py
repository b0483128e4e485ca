"""One epoch as one compiled XLA computation, and batched evaluation.

:func:`run_epoch` is the whole of an epoch under a single ``jax.jit``: a device-side
permutation of the example indices, reshaped to ``(steps, B)``, and a ``lax.scan`` of the
train step that gathers each batch from the on-device data. There is no per-step host
work and no host sync inside the epoch; the train state's buffers are donated. The data
and the carry are arguments (nothing big is closed over), so shardings can later be
given at the ``jax.jit`` boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fnet.train.objective import Metrics, Objective
from fnet.train.step import TrainState, make_step

__all__ = ["BatchPlan", "Remainder", "batch_plan", "evaluate_objective", "run_epoch"]

Remainder: TypeAlias = Literal["drop", "keep"]
REMAINDERS: tuple[str, ...] = ("drop", "keep")


class BatchPlan(NamedTuple):
    """How ``n`` examples split into the batches of one epoch (see :func:`batch_plan`).

    Attributes:
      steps: number of full batches of ``batch_size`` (scanned).
      tail: size of the last, smaller batch that is trained on; 0 if there is none
        (``n`` is a multiple of ``batch_size``, or ``remainder="drop"``).
      dropped: examples skipped each epoch (``n % batch_size`` with ``"drop"``, else 0).
      batch_size: ``B``.
    """

    steps: int
    tail: int
    dropped: int
    batch_size: int

    @property
    def n_steps(self) -> int:
        """Optimizer steps per epoch: the full batches plus the tail batch, if any."""
        return self.steps + (1 if self.tail else 0)

    @property
    def examples(self) -> int:
        """Examples trained on per epoch."""
        return self.steps * self.batch_size + self.tail

    def weights(self) -> list[int]:
        """The batch size of every step of the epoch, in order."""
        return [self.batch_size] * self.steps + ([self.tail] if self.tail else [])


def batch_plan(n: int, batch_size: int, remainder: Remainder) -> BatchPlan:
    """Split ``n`` examples into ``n // batch_size`` full batches and a remainder.

    ``remainder="keep"``: the last ``n % batch_size`` examples of the epoch's permutation
    form one smaller batch (its own optimizer step, its gradient the mean over that
    batch), so an epoch is every example exactly once. ``"drop"``: they are skipped this
    epoch (a different random subset every epoch, since the permutation changes).
    """
    steps, rest = divmod(n, batch_size)
    keep = remainder == "keep"
    return BatchPlan(steps, rest if keep else 0, 0 if keep else rest, batch_size)


def _gather(a: jax.Array, idx: jax.Array) -> jax.Array:
    """Rows ``a[idx]``; ``idx`` is a slice of a permutation: in bounds and unique."""
    return a.at[idx].get(mode="promise_in_bounds", unique_indices=True)


def _stack_tail(stacked: Metrics, tail: Metrics) -> Metrics:
    return jax.tree.map(lambda s, t: jnp.concatenate([s, t[None]]), stacked, tail)


@partial(
    jax.jit,
    static_argnames=("objective", "optimizer", "batch_size", "remainder"),
    donate_argnums=(0,),
)
def run_epoch(
    train_state: TrainState,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    epoch: jax.Array,
    *,
    objective: Objective,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    remainder: Remainder,
) -> tuple[TrainState, Metrics]:
    """Train one epoch: shuffle on device, then ``lax.scan`` the train step over batches.

    Args:
      train_state: the carry (donated: invalid after the call).
      x: ``(N, ...)`` inputs, on device. y: ``(N, ...)`` targets.
      key: the fit's PRNG key. The epoch splits ``fold_in(key, epoch)`` into
        ``n_steps + 1`` keys: the first shuffles, step ``i`` (0-based) gets key ``i + 1``.
      epoch: int32 scalar, the 0-based epoch index.
      objective, optimizer: static (compiled code is reused while they are the same
        objects and the shapes do not change).
      batch_size: static ``B``. remainder: static, see :func:`batch_plan`.

    Returns:
      ``(train_state, metrics)``: each metric stacked per step, shape ``(n_steps,)``.
    """
    n = x.shape[0]
    plan = batch_plan(n, batch_size, remainder)
    step = make_step(objective, optimizer)
    # One split gives the permutation key and every step's key (step i: keys[i + 1]).
    keys = jax.random.split(jax.random.fold_in(key, epoch), plan.n_steps + 1)

    if plan.steps == 1 and plan.tail == 0 and plan.dropped == 0:
        # Full batch: the order of examples does not matter, skip the gather.
        train_state, metrics = step(train_state, x, y, keys[1])
        return train_state, jax.tree.map(lambda m: m[None], metrics)

    order = jax.random.permutation(keys[0], n)
    rows = order[: plan.steps * batch_size].reshape(plan.steps, batch_size)

    def body(ts: TrainState, inputs: tuple[jax.Array, jax.Array]):
        step_key, idx = inputs
        return step(ts, _gather(x, idx), _gather(y, idx), step_key)

    train_state, metrics = lax.scan(body, train_state, (keys[1 : plan.steps + 1], rows))
    if plan.tail:
        idx = order[plan.steps * batch_size :]
        train_state, last = step(train_state, _gather(x, idx), _gather(y, idx), keys[-1])
        metrics = _stack_tail(metrics, last)
    return train_state, metrics


def batched_sums(
    fn: Callable[[jax.Array, jax.Array], dict[str, jax.Array]],
    x: jax.Array,
    y: jax.Array,
    batch_size: int,
) -> dict[str, jax.Array]:
    """Sum ``fn(x_batch, y_batch)`` over consecutive batches, one batch live at a time.

    Full batches are scanned; the last ``N % batch_size`` examples form one smaller batch
    of exactly that size (no padding), so every example counts once. Traceable (call it
    inside ``jax.jit``). ``fn`` returns a dict of scalars; the result has the same keys.
    """
    n = x.shape[0]
    steps, tail = divmod(n, batch_size)
    total: dict[str, jax.Array] | None = None
    if steps:

        def body(_, i):
            start = i * batch_size
            xb = lax.dynamic_slice_in_dim(x, start, batch_size)
            yb = lax.dynamic_slice_in_dim(y, start, batch_size)
            return None, fn(xb, yb)

        _, stacked = lax.scan(body, None, jnp.arange(steps, dtype=jnp.int32))
        total = jax.tree.map(lambda s: jnp.sum(s, axis=0), stacked)
    if tail:
        last = fn(x[steps * batch_size :], y[steps * batch_size :])
        total = last if total is None else jax.tree.map(jnp.add, total, last)
    assert total is not None  # n >= 1 is checked by the callers
    return total


def _as_float(v: jax.Array) -> jax.Array:
    v = jnp.asarray(v)
    return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.float32)


@partial(jax.jit, static_argnames=("objective", "batch_size"))
def evaluate_objective(
    params: Any,
    state: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    objective: Objective,
    batch_size: int,
) -> Metrics:
    """The objective's metrics (and ``"objective"``) averaged over all of ``(x, y)``.

    Calls ``objective(params, state, xb, yb, None, train=False)`` on batches of
    ``batch_size`` (the last one smaller if needed) and weights each batch's metrics by
    its size, so the result is the mean over examples for per-batch-mean metrics.
    Returns a dict of scalars (float32 for float32 models).
    """
    n = x.shape[0]

    def fn(xb, yb):
        loss, (_, metrics) = objective(params, state, xb, yb, None, train=False)
        b = xb.shape[0]
        return {k: _as_float(v) * b for k, v in {**metrics, "objective": loss}.items()}

    return {k: v / n for k, v in batched_sums(fn, x, y, batch_size).items()}
