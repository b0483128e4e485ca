"""How an epoch splits into batches (:func:`batch_plan`), and batched sums for evaluation.

The compiled epoch itself is :mod:`fnet.train.engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp

from fnet.chunking import scan_chunks

__all__ = ["BatchPlan", "Remainder", "batch_plan", "batched_sums"]

Remainder: TypeAlias = Literal["drop", "keep"]
REMAINDERS: tuple[str, ...] = ("drop", "keep")


class BatchPlan(NamedTuple):
    """How ``n`` examples split into the batches of one epoch (see :func:`batch_plan`).

    Attributes:
      steps: number of full batches of ``batch_size``.
      tail: size of the last batch, after the full ones, that is trained on; 0 if there
        is none (``n`` is a multiple of ``batch_size``, or ``remainder="drop"``). Usually
        smaller than ``batch_size``; ``batch_size + 1`` when a one-example remainder was
        merged into the last full batch (``merge_single=True``).
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

    @property
    def full_batch(self) -> bool:
        """One batch of all ``n`` examples: the order does not matter, nothing is gathered."""
        return self.steps == 1 and self.tail == 0 and self.dropped == 0

    def weights(self) -> list[int]:
        """The batch size of every step of the epoch, in order."""
        return [self.batch_size] * self.steps + ([self.tail] if self.tail else [])


def batch_plan(
    n: int, batch_size: int, remainder: Remainder, *, merge_single: bool = False
) -> BatchPlan:
    """Split ``n`` examples into ``n // batch_size`` full batches and a remainder.

    ``remainder="keep"``: the last ``n % batch_size`` examples of the epoch's permutation
    form one smaller batch (its own optimizer step, its gradient the mean over that
    batch), so an epoch is every example exactly once. ``"drop"``: they are skipped this
    epoch (a different random subset every epoch, since the permutation changes).

    ``merge_single=True`` (``fit`` sets it for models with state, e.g. BatchNorm, whose
    training-mode output on one example is its offset whatever the input): a remainder of
    exactly one example is merged into the last full batch, which then has
    ``batch_size + 1`` examples (one step fewer).
    """
    steps, rest = divmod(n, batch_size)
    keep = remainder == "keep"
    if keep and merge_single and rest == 1 and steps >= 1:
        return BatchPlan(steps - 1, batch_size + 1, 0, batch_size)
    return BatchPlan(steps, rest if keep else 0, 0 if keep else rest, batch_size)


def batched_sums(
    fn: Callable[[jax.Array, jax.Array], dict[str, jax.Array]],
    x: jax.Array,
    y: jax.Array,
    batch_size: int,
) -> dict[str, jax.Array]:
    """Sum ``fn(x_batch, y_batch)`` over consecutive batches, one batch live at a time.

    :func:`fnet.chunking.scan_chunks`: full batches are scanned; the last
    ``N % batch_size`` examples form one smaller batch of exactly that size (no padding),
    so every example counts once. The sums are the scan's carry (nothing is stacked per
    batch). Traceable (call it inside ``jax.jit``). ``fn`` returns a dict of scalars; the
    result has the same keys.
    """
    b = min(x.shape[0], batch_size)
    shape = jax.eval_shape(fn, x[:b], y[:b])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)

    def add(total, batch, _):
        return jax.tree.map(jnp.add, total, fn(*batch)), None

    return scan_chunks(add, zeros, (x, y), batch_size)[0]
