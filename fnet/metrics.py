"""Classification metrics: pure, jittable, on ``(N, C)`` scores and integer class ids.

The prediction is ``argmax`` over classes, so logits, scores and probabilities give the
same results (ties go to the lowest class index). Concrete labels (NumPy, or a
concrete ``jax.Array``) are checked on the host: an id outside ``[0, C)`` raises
:class:`fnet.errors.LabelError`. Under ``jax.jit`` (traced labels) an out-of-range
label never equals a prediction: it counts as an error, and :func:`confusion_matrix`
drops it. :func:`correct` also takes ``(N,)`` binary scores with ``±1`` labels, and
:func:`are_class_labels` says (from shapes and dtypes) whether labels are class labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet.errors import LabelError, ShapeError
from fnet.validation import check_label_values, is_concrete

__all__ = ["accuracy", "are_class_labels", "confusion_matrix", "correct", "error_count"]


def are_class_labels(scores, labels) -> bool:
    """Whether ``labels`` are class labels for ``scores``, read from shapes and dtypes only.

    True for integer labels ``(N,)`` with scores ``(N, C)`` (class ids) or ``(N,)``
    (binary scores, labels ``±1``); False for anything else, e.g. float regression
    targets or one-hot rows. Needs no values, so it works on tracers inside ``jax.jit``
    (``supervised`` uses it to decide whether to report an accuracy).
    """
    s, y = jnp.shape(scores), jnp.asarray(labels)
    return len(s) in (1, 2) and y.shape == s[:1] and bool(jnp.issubdtype(y.dtype, jnp.integer))


def _inputs(scores, labels, fn: str, *, binary: bool = False) -> tuple[jax.Array, jax.Array]:
    scores = jnp.asarray(scores)
    labels = jnp.asarray(labels)
    if scores.ndim != 2 and not (binary and scores.ndim == 1):
        also = " or (N,) for binary scores" if binary else ""
        raise ShapeError(f"{fn}: scores must have shape (N, C){also}, got {scores.shape}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        hint = " One-hot rows? Pass labels.argmax(-1)." if labels.ndim == 2 else ""
        raise LabelError(
            f"{fn}: labels must be integer class ids, got dtype {labels.dtype} and shape "
            f"{labels.shape}.{hint}"
        )
    if labels.shape != scores.shape[:1]:
        raise ShapeError(
            f"{fn}: labels must have shape (N,) = {scores.shape[:1]} for scores of shape "
            f"{scores.shape}, got {labels.shape}."
        )
    if scores.ndim == 2 and is_concrete(labels):
        check_label_values(labels, scores.shape[1], where=fn)
    return scores, labels


def _correct(scores: jax.Array, labels: jax.Array) -> jax.Array:
    if scores.ndim == 1:  # binary: the sign of the score is the prediction
        return (scores > 0) == (labels > 0)
    return jnp.argmax(scores, axis=-1) == labels


def correct(scores, labels) -> jax.Array:
    """Which examples are classified correctly.

    Args:
      scores: ``(N, C)`` logits, scores or probabilities; or ``(N,)`` binary scores
        (the prediction is ``score > 0``).
      labels: ``(N,)`` integer class ids for ``(N, C)`` scores; ``(N,)`` integer
        ``±1`` labels for ``(N,)`` scores (a label ``> 0`` is the positive class, so
        ``0/1`` labels work too).

    Returns:
      ``(N,)`` bool: ``argmax(scores_i) == labels_i``, or ``(scores_i > 0) == (labels_i > 0)``.

    Raises:
      ShapeError: scores of another rank, or labels not ``(N,)``.
      LabelError: labels that are not integers; concrete class ids outside ``[0, C)``.
    """
    return _correct(*_inputs(scores, labels, "correct", binary=True))


def accuracy(scores, labels) -> jax.Array:
    """Fraction of examples classified correctly.

    Args:
      scores: ``(N, C)`` logits, scores or probabilities.
      labels: ``(N,)`` integer class ids.

    Returns:
      A float32 scalar in ``[0, 1]`` (float32 also when x64 is on).
    """
    right = _correct(*_inputs(scores, labels, "accuracy"))
    return jnp.mean(right.astype(jnp.float32))


def error_count(scores, labels) -> jax.Array:
    """Number of misclassified examples (the slides' "test errors").

    Args:
      scores: ``(N, C)`` logits, scores or probabilities.
      labels: ``(N,)`` integer class ids.

    Returns:
      An int32 scalar.
    """
    right = _correct(*_inputs(scores, labels, "error_count"))
    return jnp.sum(~right, dtype=jnp.int32)


def confusion_matrix(scores, labels) -> jax.Array:
    """Counts of (true class, predicted class) pairs.

    Args:
      scores: ``(N, C)`` logits, scores or probabilities.
      labels: ``(N,)`` integer class ids.

    Returns:
      ``(C, C)`` int32; entry ``[i, j]`` counts examples of class ``i`` predicted as
      ``j``, so the diagonal holds the correct ones and each row sums to the number of
      examples of that class. Examples with out-of-range labels are not counted.
    """
    scores, labels = _inputs(scores, labels, "confusion_matrix")
    c = scores.shape[1]
    true = jax.nn.one_hot(labels, c, dtype=jnp.int32)
    pred = jax.nn.one_hot(jnp.argmax(scores, axis=-1), c, dtype=jnp.int32)
    return true.T @ pred
