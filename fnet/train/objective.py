"""Objectives: the function ``fit`` minimises, built from a model and a loss.

An :data:`Objective` is any pure function::

    loss, (new_state, metrics) = objective(params, state, x, y, key, *, train=True)

``loss`` is the scalar that is differentiated with respect to ``params``; ``new_state`` is
the model's updated non-trainable state (``{}`` for stateless models); ``metrics`` is a
dict of scalar arrays that ``fit`` averages over each epoch (e.g. ``{"loss": ...,
"accuracy": ...}``). The ``train`` keyword is optional for objectives used only for
training; validation inside ``fit`` calls ``objective(..., key=None, train=False)``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import jax
import jax.numpy as jnp

from fnet.core import AnyModel, as_stateful, is_stateful
from fnet.metrics import are_class_labels, correct
from fnet.validation import check_labels_for_output

__all__ = ["Metrics", "Objective", "Supervised", "correct_predictions", "supervised"]

Metrics: TypeAlias = dict[str, jax.Array]


class Objective(Protocol):
    """``objective(params, state, x, y, key, *, train=True) -> (loss, (new_state, metrics))``.

    ``x``/``y`` are one batch (leading axis ``B``); ``loss`` a scalar; ``metrics`` a dict
    of scalar arrays. ``key`` is a PRNG key (``None`` when ``train=False``).
    """

    def __call__(
        self, params: Any, state: Any, x: jax.Array, y: jax.Array, key: Any, *, train: bool = ...
    ) -> tuple[jax.Array, tuple[Any, Metrics]]: ...


def correct_predictions(scores: jax.Array, labels: jax.Array) -> jax.Array | None:
    """Deprecated: use :func:`fnet.metrics.correct` (after :func:`fnet.metrics.are_class_labels`).

    Which predictions are right, or ``None`` when ``labels`` are not class labels for
    ``scores`` (integer ``(N,)`` labels with ``(N, C)`` or ``(N,)`` scores).
    """
    warnings.warn(
        "fnet.train.correct_predictions is deprecated; use fnet.metrics.correct "
        "(and fnet.metrics.are_class_labels to test whether labels are class labels)",
        DeprecationWarning,
        stacklevel=2,
    )
    return correct(scores, labels) if are_class_labels(scores, labels) else None


@dataclasses.dataclass(frozen=True)
class Supervised:
    """The objective :func:`supervised` returns (a frozen dataclass, compared by value).

    Two ``supervised(model, loss_fn)`` calls with the same model, loss and options are
    equal and hash alike, so ``fit``/``evaluate`` reuse the code compiled for the first.
    """

    model: AnyModel
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array]
    penalty: Callable[[Any], jax.Array] | None = None
    accuracy: bool = True

    def __call__(self, params, state, x, y, key, *, train: bool = True):
        if is_stateful(self.model) and not jax.tree.leaves(state):
            raise ValueError(
                "supervised: this model has state (e.g. BatchNorm running statistics); pass "
                "the state from `_, params, state = model.init(...)` (fit(..., state=state))"
            )
        scores, new_state = as_stateful(self.model).apply(params, state, x, key=key, train=train)
        data_loss = self.loss_fn(scores, y)
        metrics: Metrics = {"loss": data_loss}
        if self.accuracy and are_class_labels(scores, y):
            metrics["accuracy"] = jnp.mean(correct(scores, y).astype(jnp.float32))
        loss = data_loss
        if self.penalty is not None:
            pen = jnp.asarray(self.penalty(params))
            metrics["penalty"] = pen
            loss = loss + pen.astype(loss.dtype)
        return loss, (new_state, metrics)

    def check_targets(self, params: Any, state: Any, x: Any, y: Any, *, name: str = "y") -> None:
        """Check concrete class labels against the model's output once, on the host.

        ``fit`` and ``evaluate`` call this before compiling: inside ``jit`` an integer
        label outside ``[0, C)`` cannot raise (the loss gives it zero loss and zero
        gradient), so it is caught here. The model's output shape comes from
        ``jax.eval_shape`` (nothing is computed; cached per model, input and params
        shapes), then :func:`fnet.validation.check_labels_for_output` runs. When the
        model cannot run on ``params``/``state``/``x`` at all, nothing is checked here:
        the step's own trace raises that error.

        Raises:
          LabelError: ``y`` holds integer class ids and one lies outside ``[0, C)``
            (e.g. labels 1..10 for 10 classes), naming the values and positions.
        """
        spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
        abstract = jax.tree.map(spec, (params, state))
        leaves, treedef = jax.tree.flatten(abstract)
        x_spec = (tuple(jnp.shape(x)[1:]), jnp.result_type(x))
        try:
            out = _output_shape(self.model, treedef, tuple(leaves), x_spec)
        except (TypeError, ValueError):
            # The model cannot run on these params/state/inputs (another model's params,
            # missing state, ...): skip the label check; compiling the step raises the
            # precise error (or, resuming, the checkpoint check does first).
            return
        check_labels_for_output(y, out, name=name)


@functools.lru_cache(maxsize=64)
def _output_shape(model: AnyModel, treedef: Any, leaves: tuple, x_spec: tuple) -> tuple:
    """``(-1, ...)``: the model's output shape for inputs ``(B, *x_spec[0])`` (abstract)."""
    params, state = jax.tree.unflatten(treedef, leaves)
    x = jax.ShapeDtypeStruct((1, *x_spec[0]), x_spec[1])
    apply = lambda p, s, xb: as_stateful(model).apply(p, s, xb, train=False)[0]
    out = jax.eval_shape(apply, params, state, x)
    return (-1, *out.shape[1:])


def supervised(
    model: AnyModel,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    penalty: Callable[[Any], jax.Array] | None = None,
    accuracy: bool = True,
) -> Supervised:
    """The supervised objective ``loss_fn(model(x), y) + penalty(params)``.

    Runs ``as_stateful(model).apply(params, state, x, key=key, train=train)``, so plain
    and stateful models (BatchNorm) work alike. A regularized objective needs no special
    case: ``supervised(model, softmax_cross_entropy, penalty=lambda p: lam * l2(p))``.

    Args:
      model: an fnet ``Model`` or ``StatefulModel`` returning scores ``(B, ...)``.
      loss_fn: ``loss_fn(scores, y) -> scalar``, the mean over the batch
        (e.g. ``fnet.losses.softmax_cross_entropy``).
      penalty: optional ``penalty(params) -> scalar`` added to the loss (include its
        strength: ``lambda p: 1e-3 * l2(p)``).
      accuracy: report the ``"accuracy"`` metric (default). ``False`` saves its argmax and
        comparison in every training step (``fit`` then reports no ``train_accuracy``).

    Returns:
      A :class:`Supervised` objective whose metrics are ``"loss"`` (the data loss,
      without the penalty), ``"accuracy"`` (float32; with ``accuracy=True`` and only for
      integer class labels ``(B,)`` with ``(B, C)`` scores, or ``±1`` labels with ``(B,)``
      scores) and ``"penalty"`` (when given). ``fit`` adds ``"objective"`` (data loss +
      penalty; equal to ``"loss"`` without a penalty). Equal arguments give equal
      objectives (compiled code is shared).
    """
    return Supervised(model, loss_fn, penalty, accuracy)
