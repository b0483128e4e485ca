"""A ready ``on_epoch_end`` hook that records gradient-noise statistics during training."""

from __future__ import annotations

from typing import Any

import jax

from fnet._checks import check_int
from fnet.core import Params, is_stateful
from fnet.per_example.objective import LossFn, ModelLoss, ObjectiveLoss, as_loss_fn
from fnet.per_example.sampling import check_sampling
from fnet.per_example.statistics import stats

__all__ = ["Tracker", "tracker"]


class Tracker:
    """Call as ``hook(epoch, params, state=None)``; every ``every`` epochs it appends
    ``{"epoch": e, **GradientStats.summary()}`` (plus the predicted mini-batch variance
    and expected cosine at ``batch_sizes``) to ``self.history``.

    The history list is this object's own (no global state). Epochs are counted as the
    caller counts them; epoch ``e`` is recorded when ``e % every == 0``.
    """

    def __init__(
        self,
        loss_fn: LossFn,
        x: Any,
        y: Any,
        *,
        every: int = 1,
        batch_sizes: tuple[int, ...] = (),
        sampling: str = "without_replacement",
        **stats_kwargs: Any,
    ) -> None:
        self.every = check_int(every, "tracker: every", minimum=1)
        self.batch_sizes = tuple(
            check_int(b, "tracker: batch_sizes", minimum=1) for b in batch_sizes
        )
        check_sampling(sampling)
        self.loss_fn, self.x, self.y, self.sampling = as_loss_fn(loss_fn), x, y, sampling
        self.stats_kwargs = stats_kwargs
        self.history: list[dict[str, Any]] = []

    def __call__(self, epoch: int, params: Params, state: Any = None) -> None:
        """Record the statistics at ``params`` if ``epoch % every == 0``."""
        if epoch % self.every:
            return
        stateful = (isinstance(self.loss_fn, ModelLoss) and is_stateful(self.loss_fn.model)) or (
            isinstance(self.loss_fn, ObjectiveLoss) and state is not None
        )
        kwargs = dict(self.stats_kwargs)
        if stateful:
            kwargs["state"] = state
        if "hessian_key" in kwargs and kwargs["hessian_key"] is not None:
            kwargs["hessian_key"] = jax.random.fold_in(kwargs["hessian_key"], epoch)
        s = stats(self.loss_fn, params, self.x, self.y, **kwargs)
        row: dict[str, Any] = {"epoch": int(epoch), **s.summary()}
        for b in self.batch_sizes:
            row[f"variance_b{b}"] = float(s.minibatch_variance(b, self.sampling))  # type: ignore[arg-type]
            row[f"cosine_b{b}"] = float(s.expected_cosine(b, self.sampling))  # type: ignore[arg-type]
        self.history.append(row)


def tracker(loss_fn: LossFn, x: Any, y: Any, *, every: int = 1, **kwargs: Any) -> Tracker:
    """Make a :class:`Tracker` hook for ``fnet.train.fit(..., on_epoch_end=...)``.

    ``kwargs``: ``batch_sizes``, ``sampling`` and any keyword of
    :func:`fnet.per_example.stats` (``method``, ``chunk_size``, ``hessian_examples``...).
    """
    return Tracker(loss_fn, x, y, every=every, **kwargs)
