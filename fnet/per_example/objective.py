"""The loss contracts of :mod:`fnet.per_example`: fnet's ``Objective``, a plain loss, ModelLoss.

Every function of :mod:`fnet.per_example` takes its loss as the first argument, in one of
two forms:

* an **Objective**, the contract of :mod:`fnet.train` (what ``fnet.fit`` minimises)::

      loss, (new_state, metrics) = objective(params, state, x, y, key, *, train)

  e.g. ``fnet.train.supervised(model, softmax_cross_entropy)``. It is recognised by its
  signature: a keyword-only ``train`` parameter, or at least five required positional
  parameters. Per-example code calls it with ``train=False`` (frozen BatchNorm
  statistics, no Dropout) and ``state={}`` when no ``state=`` is given, and
  differentiates ``loss``; ``new_state`` and ``metrics`` are dropped. A
  ``supervised`` objective without a penalty becomes a :class:`ModelLoss` (the dense
  trick applies). Wrap it yourself
  with :func:`from_objective` to choose ``train=True`` (Dropout with per-example keys)
  or when its signature does not say what it is.
* a **plain loss** ``loss_fn(params, x, y, key=None, state=None) -> scalar``, the form
  per-example code uses inside (:data:`LossFn`; ``key=``/``state=`` are passed only when
  given). :class:`ModelLoss` is one that also records the model, which allows the
  dense-layer trick.

Either way the loss is over a BATCH ``x, y`` (leading example axis); example ``i``'s
gradient ``g_i`` is the gradient of the loss of the batch ``x[i:i+1], y[i:i+1]``.

``reduction`` says how the loss combines a batch: ``"mean"`` (``L = (1/n) sum_i l_i``,
fnet's default) or ``"sum"``. It does not change ``g_i`` (a batch of one is the same
under both); it fixes how per-example gradients relate to the batch gradient.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeAlias, get_args

import jax

from fnet.core import AnyModel, Params, is_stateful
from fnet.losses import BatchReduction
from fnet.train.objective import Supervised

__all__ = [
    "LossFn",
    "ModelLoss",
    "ObjectiveLoss",
    "Reduction",
    "as_loss_fn",
    "call_loss",
    "from_objective",
    "is_objective",
    "model_loss",
]

LossFn: TypeAlias = Callable[..., jax.Array]
Reduction: TypeAlias = BatchReduction
"""Deprecated name of :data:`fnet.losses.BatchReduction` (the same type): how a loss
combines a batch into the scalar that is differentiated, ``"mean"`` or ``"sum"``."""
REDUCTIONS: tuple[str, ...] = get_args(BatchReduction)


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
    reduction: BatchReduction = "mean"

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
    reduction: BatchReduction = "mean",
) -> ModelLoss:
    """Build a :class:`ModelLoss`: ``loss_fn(params, x, y) = loss(model(params, x), y)``."""
    return ModelLoss(model, loss, train, reduction)


@dataclasses.dataclass(frozen=True)
class ObjectiveLoss:
    """The plain per-example loss of an ``Objective``: its differentiated ``loss`` only.

    ``ObjectiveLoss(objective, train)(params, x, y, key=None, state=None)`` is
    ``objective(params, {} if state is None else state, x, y, key, train=train)[0]``.
    Hashable when ``objective`` is (functions are), so it can be a static ``jax.jit``
    argument; two wrappers of the same objective and ``train`` compare equal and share
    compiled code. Build it with :func:`from_objective`.

    Attributes:
      objective: a :class:`fnet.train.Objective`.
      train: passed as ``train=`` (``False``: frozen BatchNorm statistics, no Dropout).
    """

    objective: Callable[..., Any]
    train: bool = False

    def __call__(self, params: Params, x: Any, y: Any, key: Any = None, state: Any = None):
        """The scalar loss of the batch ``x, y`` (new state and metrics are dropped)."""
        state = {} if state is None else state
        return self.objective(params, state, x, y, key, train=self.train)[0]


def from_objective(
    objective: Callable[..., Any], *, train: bool = False
) -> ModelLoss | ObjectiveLoss:
    """Use an ``Objective`` (``fnet.train`` contract) in :mod:`fnet.per_example`.

    A ``fnet.train.supervised(model, loss)`` objective without a ``penalty`` becomes
    ``ModelLoss(model, loss, train)``: the same loss, with the model visible, so the
    dense-layer trick applies to it. Any other objective is wrapped in an
    :class:`ObjectiveLoss` (``g_i`` then includes the penalty's gradient).

    Args:
      objective: ``objective(params, state, x, y, key, *, train) -> (loss, (state,
        metrics))``, e.g. ``fnet.train.supervised(model, softmax_cross_entropy)``.
      train: the ``train=`` it is called with. ``True`` turns Dropout on (pass ``key=``
        to the per-example function: each example gets its own key); a stateful model
        (BatchNorm) must stay at ``False``, as batch statistics of one example are
        degenerate.

    Returns:
      A :class:`ModelLoss` or :class:`ObjectiveLoss`: a plain loss ``loss_fn(params, x,
      y, key=None, state=None) -> scalar``.

    Raises:
      TypeError: ``objective`` is not callable.
      ValueError: ``train=True`` for a supervised objective of a stateful model.
    """
    if not callable(objective):
        raise TypeError(f"from_objective: objective must be callable, got {objective!r}")
    if isinstance(objective, Supervised) and objective.penalty is None:
        return ModelLoss(objective.model, objective.loss_fn, bool(train))
    return ObjectiveLoss(objective, bool(train))


def is_objective(fn: Any) -> bool:
    """True if ``fn``'s signature is an ``Objective``'s (see the module docstring).

    An Objective has a keyword-only ``train`` parameter, or at least five required
    positional parameters ``(params, state, x, y, key)``; a plain loss has three
    (``params, x, y``). ``ModelLoss`` and ``ObjectiveLoss`` are plain losses. A callable
    whose signature cannot be read is taken as a plain loss.
    """
    if isinstance(fn, (ModelLoss, ObjectiveLoss)):
        return False
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.KEYWORD_ONLY and p.name == "train" for p in params):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is p.empty]
    return len(required) >= 5


def as_loss_fn(fn: Any) -> Any:
    """``fn`` as a plain loss: an ``Objective`` is wrapped by :func:`from_objective`
    (``train=False``); a plain loss, :class:`ModelLoss` or :class:`ObjectiveLoss` is
    returned unchanged.

    Raises:
      TypeError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"the loss must be callable (an Objective or a loss_fn), got {fn!r}")
    return from_objective(fn) if is_objective(fn) else fn
