"""Loss functions: pure, jittable, batched, each with a per-example twin for ``jax.vmap``.

Conventions (the same for every loss here):

* The batched form ``loss(x, y, *, reduction="mean")`` takes a leading batch axis ``N``.
  ``reduction="mean"`` (default) averages the per-example losses over the batch,
  ``"sum"`` adds them, ``"none"`` returns them, shape ``(N,)``. This matches the slides'
  objective ``L = (1/N) sum_i L_i`` (add a regularizer yourself:
  ``loss + lam * fnet.regularizers.l2(params)``).
* The per-example form ``loss_per_example(x_i, y_i)`` takes ONE example without a batch
  axis and returns a scalar. It is what you ``jax.vmap`` (e.g. for per-example
  gradients); ``jax.vmap(loss_per_example)(x, y) == loss(x, y, reduction="none")``.
* The result has the floating dtype of the scores/predictions: float32 in, float32 out,
  also when ``jax_enable_x64`` is on (labels and targets are cast to that dtype).
  Scores of a narrower float (``bfloat16``/``float16``, from a mixed-precision model)
  are cast to float32 first, so the loss is computed and returned in float32.
* Infinite scores: ``-inf`` is a legal score (a masked class); every classification
  loss here gives the right finite value and finite gradients as long as the label's
  class is not masked (then the loss is ``+inf``). ``+inf`` and NaN scores are not
  legal.
* Static properties (rank, batch size, dtype) are checked eagerly in Python, so the
  checks also run (once, at trace time) under ``jax.jit``. They raise
  :class:`fnet.errors.ShapeError`, :class:`fnet.errors.LabelError` or ``TypeError``.
  Label VALUES cannot be checked inside a compiled function; see below.

Out-of-range integer labels. Called eagerly on concrete labels (NumPy arrays or
concrete ``jax.Array`` s), every loss here checks the label VALUES on the host and raises
:class:`fnet.errors.LabelError` for a class id outside ``[0, C)`` (or a binary label
other than ``-1``/``+1``). Under ``jax.jit``/``vmap``/``grad`` the labels are tracers
whose values are unknown, and the documented in-jit behaviour applies: an id outside
``[0, C)`` (negative ones included, nothing wraps around) gives that example loss
exactly ``0`` and gradient exactly ``0`` for :func:`softmax_cross_entropy` and
:func:`multiclass_hinge`: it is silently ignored, while ``reduction="mean"`` still
divides by the full ``N``. No NaN, no error. ``fit`` and ``evaluate`` check concrete
labels once on the host (:func:`fnet.validation.check_labels_for_output`).
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnet.errors import LabelError, ShapeError
from fnet.validation import check_label_values, is_concrete

__all__ = [
    "BatchReduction",
    "Reduction",
    "binary_logistic",
    "binary_logistic_per_example",
    "mean_squared_error",
    "mean_squared_error_per_example",
    "multiclass_hinge",
    "multiclass_hinge_per_example",
    "softmax_cross_entropy",
    "softmax_cross_entropy_per_example",
]

BatchReduction: TypeAlias = Literal["mean", "sum"]
"""How a batch's per-example losses become ONE scalar (the value that is differentiated):
their mean or their sum. ``fnet.per_example`` takes it as ``reduction=``."""
Reduction: TypeAlias = Literal[BatchReduction, "none"]
"""A loss's ``reduction=``: a :data:`BatchReduction`, or ``"none"`` for the ``(N,)``
per-example losses."""
_REDUCTIONS: tuple[str, ...] = get_args(Reduction)


# --------------------------------------------------------------------------- checks


def _float_array(x, fn: str, name: str) -> jax.Array:
    """``x`` as a JAX array with a floating dtype of at least 32 bits, else ``TypeError``.

    ``bfloat16``/``float16`` scores (mixed precision) are cast to float32: the loss is
    computed in float32.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name} must have a floating dtype, got {x.dtype}. "
            f"Cast with {name}.astype(jnp.float32)."
        )
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_rank(x: jax.Array, rank: int, fn: str, name: str, expected: str) -> None:
    if x.ndim != rank:
        raise ShapeError(f"{fn}: {name} must have shape {expected}, got shape {x.shape}.")


def _class_labels(labels, scores: jax.Array, fn: str, *, batched: bool) -> jax.Array:
    """Check class labels against ``scores``; return integer ids or probability rows.

    ``scores`` has shape ``(N, C)`` (batched) or ``(C,)``. Labels are integer ids of shape
    ``(N,)`` / ``()`` (returned as int32, after a host-side range check when concrete) or
    floating one-hot/probabilities of the same shape as ``scores`` (returned in the
    scores' dtype).
    """
    labels = jnp.asarray(labels)
    c = scores.shape[-1]
    ids_shape = scores.shape[:-1]
    ids_text = "(N,)" if batched else "() (a scalar)"
    probs_text = "(N, C)" if batched else "(C,)"
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != ids_shape:
            hint = ""
            if labels.shape == scores.shape:
                hint = (
                    " Integer labels of the scores' shape look like one-hot rows: pass "
                    "labels.argmax(-1) as class ids, or cast them to a float dtype."
                )
            elif batched and labels.ndim == 2 and labels.shape == (*ids_shape, 1):
                hint = " Drop the trailing axis: labels[:, 0]."
            raise LabelError(
                f"{fn}: integer class ids must have shape {ids_text} = {ids_shape} for "
                f"scores of shape {scores.shape}, got shape {labels.shape}.{hint}"
            )
        if is_concrete(labels):
            check_label_values(labels, c, where=fn)
        return labels.astype(jnp.int32)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != scores.shape:
            hint = ""
            if labels.shape == ids_shape:
                hint = (
                    " Float labels of shape (N,) look like class ids: cast them with "
                    "labels.astype(jnp.int32)."
                )
            raise LabelError(
                f"{fn}: float labels are one-hot rows or class probabilities and must "
                f"have the scores' shape {probs_text} = {scores.shape}, got shape "
                f"{labels.shape} ({labels.dtype}).{hint}"
            )
        return labels.astype(scores.dtype)
    raise LabelError(
        f"{fn}: labels must be integer class ids of shape {ids_text} or float "
        f"probabilities of shape {probs_text}, got dtype {labels.dtype}."
    )


def _check_batch(n: int, labels: jax.Array, fn: str, what: str) -> None:
    if labels.shape[:1] != (n,):
        raise ShapeError(
            f"{fn}: batch size mismatch: scores have {n} examples but {what} have shape "
            f"{labels.shape}."
        )


def _reduce(per_example: jax.Array, reduction: str, fn: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(per_example)
    if reduction == "sum":
        return jnp.sum(per_example)
    if reduction == "none":
        return per_example
    raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}.")


def _classification_inputs(scores, labels, fn: str, name: str, *, batched: bool):
    scores = _float_array(scores, fn, name)
    if batched:
        _check_rank(scores, 2, fn, name, "(N, C)")
        labels_arr = jnp.asarray(labels)
        if labels_arr.ndim >= 1:
            _check_batch(scores.shape[0], labels_arr, fn, "labels")
    else:
        _check_rank(scores, 1, fn, name, "(C,) (one example, no batch axis)")
    return scores, _class_labels(labels, scores, fn, batched=batched)


# --------------------------------------------------------------------------- losses


def _pick(scores: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(scores[..., id], valid)``: the label's score (0 where the id is out of range)."""
    c = scores.shape[-1]
    valid = (ids >= 0) & (ids < c)
    safe = jnp.where(valid, ids, 0)
    picked = jnp.take_along_axis(scores, safe[..., None], axis=-1)[..., 0]
    return jnp.where(valid, picked, jnp.zeros((), scores.dtype)), valid


def _softmax_ce(logits: jax.Array, targets: jax.Array) -> jax.Array:
    if jnp.issubdtype(targets.dtype, jnp.integer):
        # Gather form, no one-hot matrix: L = logsumexp(s) - s_y, both taken of the
        # logits shifted by their (stop-gradient) row max, so the difference is exact for
        # logits of magnitude 1e4+; -inf entries get weight exactly 0.
        peak = lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
        shifted = logits - jnp.where(jnp.isfinite(peak), peak, jnp.zeros((), logits.dtype))
        picked, valid = _pick(shifted, targets)
        lse = jax.nn.logsumexp(shifted, axis=-1)
        return jnp.where(valid, lse - picked, jnp.zeros((), logits.dtype))
    # Terms with target 0 are 0 even where log_softmax is -inf (a masked class): a plain
    # product would give 0 * -inf = NaN.
    log_p = jax.nn.log_softmax(logits, axis=-1)
    terms = jnp.where(targets != 0, targets * log_p, jnp.zeros((), logits.dtype))
    return -jnp.sum(terms, axis=-1)


def softmax_cross_entropy(logits, labels, *, reduction: Reduction = "mean") -> jax.Array:
    """Softmax cross-entropy ``L_i = -sum_j y_ij log softmax(s_i)_j`` (natural log).

    For a class id ``y_i`` this is ``L_i = -s_{i,y_i} + log sum_j exp(s_ij)``, computed
    stably via log-sum-exp (finite and exact for logits of magnitude 1e4 and beyond).

    Args:
      logits: ``(N, C)`` floating scores (unnormalised log-probabilities).
      labels: integer class ids ``(N,)``, or floating one-hot rows / class
        probabilities ``(N, C)`` (cast to ``logits.dtype``).
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example ``(N,)``).

    Returns:
      A scalar (or ``(N,)`` for ``"none"``) of ``logits.dtype``.

    Integer ids use the gather form ``logsumexp(s_i) - s_{i,y_i}`` (no one-hot matrix);
    probability rows skip the terms whose target is 0, so a ``-inf`` logit (a masked
    class) is legal in both forms: ``[[-inf, 1, 2]]`` with label 2 gives
    ``log(e + e^2) - 2 = 0.3132617``.

    Label values: concrete out-of-range ids raise ``LabelError``. Under ``jit`` (traced
    labels) an id outside ``[0, C)`` gives that example loss and gradient exactly ``0``
    (the mean still counts it in ``N``).

    Raises:
      TypeError: ``logits`` not floating.
      ShapeError: ``logits`` not rank 2, or batch sizes differ.
      LabelError: labels of the wrong shape or dtype for either form, or concrete ids
        outside ``[0, C)``.
    """
    fn = "softmax_cross_entropy"
    logits, targets = _classification_inputs(logits, labels, fn, "logits", batched=True)
    return _reduce(_softmax_ce(logits, targets), reduction, fn)


def softmax_cross_entropy_per_example(logits, label) -> jax.Array:
    """:func:`softmax_cross_entropy` of ONE example, for ``jax.vmap``.

    Args:
      logits: ``(C,)`` floating scores.
      label: an integer class id (shape ``()``) or ``(C,)`` floating probabilities.

    Returns:
      A scalar of ``logits.dtype``.
    """
    fn = "softmax_cross_entropy_per_example"
    logits, targets = _classification_inputs(logits, label, fn, "logits", batched=False)
    return _softmax_ce(logits, targets)


def _hinge(scores: jax.Array, labels: jax.Array, margin) -> jax.Array:
    zero = jnp.zeros((), scores.dtype)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        correct, valid = _pick(scores, labels)
        classes = jnp.arange(scores.shape[-1]).reshape((1,) * labels.ndim + scores.shape[-1:])
        is_label = classes == labels[..., None]
        weight = valid.astype(scores.dtype)
    else:
        # One-hot rows; written with ``where`` so a -inf score times 0 is never formed.
        correct = jnp.sum(jnp.where(labels != 0, labels * scores, zero), axis=-1)
        is_label = labels != 0
        weight = jnp.sum(labels, axis=-1)
    margins = jnp.maximum(zero, scores - correct[..., None] + jnp.asarray(margin, scores.dtype))
    # The j = y_i term (max(0, Delta) = Delta) is excluded. ``weight`` is 1 for an
    # in-range id and 0 for an out-of-range one (under jit), whose loss would otherwise be
    # an arbitrary sum over all classes.
    return weight * jnp.sum(jnp.where(is_label, zero, margins), axis=-1)


def _check_margin(margin, fn: str) -> None:
    if not isinstance(margin, (int, float, np.floating, np.integer)) and not (
        isinstance(margin, jax.Array) and margin.ndim == 0
    ):
        raise TypeError(f"{fn}: margin must be a scalar, got {type(margin).__name__}.")


def multiclass_hinge(
    scores, labels, margin: float = 1.0, *, reduction: Reduction = "mean"
) -> jax.Array:
    """Multiclass SVM (hinge) loss ``L_i = sum_{j != y_i} max(0, s_ij - s_{i,y_i} + Delta)``.

    Exactly the slides' (Weston-Watkins / CS231n) form: no 1/2, no squared hinge; the
    loss is 0 for an example once every wrong class scores at least ``Delta`` below the
    correct one, and then its gradient is exactly 0 too ("hinge stops pulling").

    Args:
      scores: ``(N, C)`` floating class scores.
      labels: integer class ids ``(N,)`` (floating one-hot rows ``(N, C)`` also work).
      margin: ``Delta`` (a scalar, default 1.0), cast to ``scores.dtype``.
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example ``(N,)``).

    Returns:
      A scalar (or ``(N,)`` for ``"none"``) of ``scores.dtype``.

    ``-inf`` scores of classes other than the label's are legal (they add 0).
    Concrete out-of-range ids raise ``LabelError``; under ``jit`` an out-of-range id gives
    that example loss and gradient exactly ``0``.

    Raises:
      TypeError: ``scores`` not floating, or ``margin`` not a scalar.
      ShapeError: ``scores`` not rank 2, or batch sizes differ.
      LabelError: labels of the wrong shape or dtype, or concrete ids outside ``[0, C)``.
    """
    fn = "multiclass_hinge"
    _check_margin(margin, fn)
    scores, targets = _classification_inputs(scores, labels, fn, "scores", batched=True)
    return _reduce(_hinge(scores, targets, margin), reduction, fn)


def multiclass_hinge_per_example(scores, label, margin: float = 1.0) -> jax.Array:
    """:func:`multiclass_hinge` of ONE example, for ``jax.vmap``.

    Args:
      scores: ``(C,)`` floating class scores.
      label: an integer class id (shape ``()``).
      margin: ``Delta``.

    Returns:
      A scalar of ``scores.dtype``.
    """
    fn = "multiclass_hinge_per_example"
    _check_margin(margin, fn)
    scores, target = _classification_inputs(scores, label, fn, "scores", batched=False)
    return _hinge(scores, target, margin)


def _binary_inputs(scores, labels, fn: str, *, batched: bool):
    scores = _float_array(scores, fn, "scores")
    labels = jnp.asarray(labels)
    if batched:
        if scores.ndim != 1:
            hint = (
                " For a dense layer with one output use scores[:, 0]."
                if (scores.ndim == 2 and scores.shape[1] == 1)
                else ""
            )
            raise ShapeError(f"{fn}: scores must have shape (N,), got {scores.shape}.{hint}")
        if labels.shape != scores.shape:
            raise ShapeError(
                f"{fn}: labels must have the scores' shape (N,) = {scores.shape}, got "
                f"shape {labels.shape}."
            )
    else:
        if scores.ndim != 0 or labels.ndim != 0:
            raise ShapeError(
                f"{fn}: expects one example: scalar score and scalar label, got shapes "
                f"{scores.shape} and {labels.shape}."
            )
    if not (
        jnp.issubdtype(labels.dtype, jnp.integer) or jnp.issubdtype(labels.dtype, jnp.floating)
    ):
        raise LabelError(
            f"{fn}: labels must be -1/+1 (integer or float), got dtype {labels.dtype}."
        )
    if is_concrete(labels):
        values = np.asarray(labels)
        bad = np.argwhere((values != 1) & (values != -1))
        if bad.size:
            first = values[tuple(bad[0])] if values.ndim else values
            raise LabelError(
                f"{fn}: labels must be -1 or +1, got {len(bad)} other value(s), the first "
                f"{first!r}. For 0/1 labels pass 2 * labels - 1."
            )
    return scores, labels.astype(scores.dtype)


def binary_logistic(scores, labels, *, reduction: Reduction = "mean") -> jax.Array:
    """Binary logistic loss for labels in ``{-1, +1}``: ``L_i = log(1 + exp(-y_i s_i))``.

    Computed as ``softplus(-y s)``, finite for any finite score. This is the negative
    log-likelihood of ``P(y | x) = sigmoid(y s)``.

    Relation to the slides' binary case (SEEDS §2): a softmax over the two scores
    ``+w^T f(x)`` (class "+1") and ``-w^T f(x)`` (class "-1") gives
    ``P(y | x) = exp(y t) / (exp(t) + exp(-t)) = sigmoid(2 y t)`` with ``t = w^T f(x)``, so
    its cross-entropy is ``binary_logistic(2 t, y)``:
    ``softmax_cross_entropy(stack([t, -t], -1), (1 - y) // 2) == binary_logistic(2 * t, y)``.
    The factor 2 is absorbed into ``w``; both models describe the same classifiers.

    Args:
      scores: ``(N,)`` floating scores ``s_i`` (predict ``sign(s_i)``).
      labels: ``(N,)`` labels ``-1`` or ``+1``, integer or floating (cast to
        ``scores.dtype``). Concrete labels are checked on the host (another value raises
        ``LabelError``); under ``jit`` another value ``y`` is used as is (e.g. ``0`` gives
        ``log 2``).
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example ``(N,)``).

    Returns:
      A scalar (or ``(N,)`` for ``"none"``) of ``scores.dtype``.
    """
    fn = "binary_logistic"
    scores, y = _binary_inputs(scores, labels, fn, batched=True)
    return _reduce(jax.nn.softplus(-y * scores), reduction, fn)


def binary_logistic_per_example(score, label) -> jax.Array:
    """:func:`binary_logistic` of ONE example (scalar score, scalar ±1 label), for vmap."""
    fn = "binary_logistic_per_example"
    score, y = _binary_inputs(score, label, fn, batched=False)
    return jax.nn.softplus(-y * score)


def _mse_inputs(predictions, targets, fn: str, *, batched: bool):
    predictions = _float_array(predictions, fn, "predictions")
    targets = jnp.asarray(targets)
    if batched and predictions.ndim < 1:
        raise ShapeError(f"{fn}: predictions need a leading batch axis, got shape ().")
    if targets.shape != predictions.shape:
        if batched and targets.ndim >= 1 and targets.shape[0] != predictions.shape[0]:
            raise ShapeError(
                f"{fn}: batch size mismatch: predictions have shape {predictions.shape}, "
                f"targets {targets.shape}."
            )
        raise ShapeError(
            f"{fn}: targets must have the predictions' shape {predictions.shape}, got "
            f"{targets.shape} (fnet does not broadcast here; reshape explicitly)."
        )
    if not (
        jnp.issubdtype(targets.dtype, jnp.floating) or jnp.issubdtype(targets.dtype, jnp.integer)
    ):
        raise TypeError(f"{fn}: targets must be numeric, got dtype {targets.dtype}.")
    return predictions, targets.astype(predictions.dtype)


def _mse(predictions: jax.Array, targets: jax.Array, first_axis: int) -> jax.Array:
    sq = jnp.square(predictions - targets)
    return jnp.mean(sq, axis=tuple(range(first_axis, sq.ndim)))


def mean_squared_error(predictions, targets, *, reduction: Reduction = "mean") -> jax.Array:
    """Mean squared error: ``L_i = mean_k (p_ik - t_ik)^2`` over each example's entries.

    No factor 1/2. With ``reduction="mean"`` the result is the mean over all entries,
    ``mean((p - t)^2)``.

    Args:
      predictions: ``(N, ...)`` floating.
      targets: the same shape as ``predictions`` (no broadcasting), numeric; cast to
        ``predictions.dtype``.
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example ``(N,)``).

    Returns:
      A scalar (or ``(N,)`` for ``"none"``) of ``predictions.dtype``.
    """
    fn = "mean_squared_error"
    predictions, targets = _mse_inputs(predictions, targets, fn, batched=True)
    return _reduce(_mse(predictions, targets, 1), reduction, fn)


def mean_squared_error_per_example(prediction, target) -> jax.Array:
    """:func:`mean_squared_error` of ONE example (any shape, no batch axis), for vmap."""
    fn = "mean_squared_error_per_example"
    prediction, target = _mse_inputs(prediction, target, fn, batched=False)
    return _mse(prediction, target, 0)
