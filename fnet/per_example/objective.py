"""The loss-function contract of :mod:`fnet.per_example` and :class:`ModelLoss`.

A loss function here is ``loss_fn(params, x, y, **kw) -> scalar`` over a BATCH ``x, y``
(leading example axis). The per-example machinery calls it on one example at a time,
``loss_fn(params, x[i:i+1], y[i:i+1])``, under ``jax.vmap``; the per-example gradient
``g_i`` is the gradient of that call. Keyword arguments are passed only when given:
``key=`` (a per-example PRNG key, for dropout) and ``state=`` (non-trainable state such
as BatchNorm running statistics, never differentiated).

``reduction`` says how ``loss_fn`` combines a batch: ``"mean"`` (``L = (1/n) sum_i l_i``,
fnet's default) or ``"sum"``. It does not change ``g_i`` (a batch of one is the same
under both); it fixes how per-example gradients relate to the batch gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import jax

from fnet.core import AnyModel, Params, is_stateful

__all__ = ["LossFn", "ModelLoss", "Reduction", "call_loss", "model_loss"]

LossFn: TypeAlias = Callable[..., jax.Array]
Reduction: TypeAlias = Literal["mean", "sum"]
REDUCTIONS = ("mean", "sum")


def check_reduction(reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is ``"mean"`` or ``"sum"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def call_loss(
    loss_fn: LossFn, params: Params, x: Any, y: Any, key: Any = None, state: Any = None
) -> jax.Array:
    """``loss_fn(params, x, y)``, adding ``key=`` / ``state=`` only when they are not None."""
    kwargs = {}
    if key is not None:
        kwargs["key"] = key
    if state is not None:
        kwargs["state"] = state
    return loss_fn(params, x, y, **kwargs)


@dataclasses.dataclass(frozen=True)
class ModelLoss:
    """``loss(model(params, x), y)``: a loss function that keeps the model visible.

    Calling it is an ordinary ``loss_fn(params, x, y, key=None, state=None)``; because it
    records ``model``, :func:`fnet.per_example.norms` and :func:`fnet.per_example.stats`
    can use the dense-layer trick on ``serial`` chains of Dense and parameter-free layers.

    Attributes:
      model: an fnet ``Model`` or ``StatefulModel``.
      loss: ``loss(outputs, labels) -> scalar`` over a batch, e.g.
        ``fnet.losses.softmax_cross_entropy`` (which averages: ``reduction="mean"``).
      train: passed to ``model.apply`` (Dropout is active when True; needs ``key=``).
      reduction: how ``loss`` combines a batch, ``"mean"`` or ``"sum"``.

    Stateful models (BatchNorm) are evaluated with FROZEN statistics: ``train`` must be
    False and the running statistics are passed as ``state=``. Batch statistics are not
    defined for one example, so per-example gradients use the running ones.
    """

    model: AnyModel
    loss: Callable[[Any, Any], jax.Array]
    train: bool = False
    reduction: Reduction = "mean"

    def __post_init__(self) -> None:
        check_reduction(self.reduction)
        if self.train and is_stateful(self.model):
            raise ValueError(
                "ModelLoss: a stateful model (BatchNorm) must use train=False under "
                "per-example gradients: batch statistics of a single example are "
                "degenerate, so fnet freezes them (see docs/per_example.md)"
            )

    def apply(self, params: Params, x: Any, key: Any = None, state: Any = None) -> Any:
        """The model's outputs for the batch ``x`` (state is not updated)."""
        if is_stateful(self.model):
            if state is None:
                raise ValueError("ModelLoss of a stateful model needs state= (running stats)")
            return self.model.apply(params, state, x, key=key, train=False)[0]
        return self.model.apply(params, x, key=key, train=self.train)

    def __call__(self, params: Params, x: Any, y: Any, key: Any = None, state: Any = None):
        """The scalar loss of the batch ``x, y`` (dtype of the model's outputs)."""
        return self.loss(self.apply(params, x, key, state), y)


def model_loss(
    model: AnyModel,
    loss: Callable[[Any, Any], jax.Array],
    *,
    train: bool = False,
    reduction: Reduction = "mean",
) -> ModelLoss:
    """Build a :class:`ModelLoss`: ``loss_fn(params, x, y) = loss(model(params, x), y)``."""
    return ModelLoss(model, loss, train, reduction)
