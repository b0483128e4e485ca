"""Eager checks of user data, to run once before training.

Under ``jax.jit`` fnet cannot raise on data-dependent conditions: an integer label
outside ``[0, n_classes)`` is not an error inside a compiled computation. What happens
then is documented per loss (``fnet.losses``): the one-hot of an out-of-range label is
all zeros, so that example contributes a wrong (not NaN) loss. Call
:func:`check_labels` on your data before training to catch it.
"""

from __future__ import annotations

import jax
import numpy as np

from fnet._checks import check_int
from fnet.errors import LabelError

__all__ = ["check_label_values", "check_labels", "check_labels_for_output", "is_concrete"]


def check_labels(labels, n_classes: int, *, name: str = "labels") -> np.ndarray:
    """Check integer class labels eagerly and return them as a NumPy ``int32`` array.

    Args:
      labels: array-like of shape ``(N,)`` with an integer dtype.
      n_classes: the number of classes; every label must lie in ``[0, n_classes)``.
      name: what to call the array in error messages.

    Returns:
      ``np.ndarray`` of shape ``(N,)``, dtype ``int32``.

    Raises:
      LabelError: wrong rank, non-integer dtype, or values out of range (the message
        gives the offending values and their positions).
      TypeError, ValueError: ``n_classes`` is not an int >= 1.
    """
    n_classes = check_int(n_classes, "n_classes", minimum=1)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise LabelError(
            f"{name} must be a 1-D array of integer class ids, got shape {arr.shape}. "
            "If they are one-hot, convert with labels.argmax(-1)."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(
            f"{name} must have an integer dtype, got {arr.dtype}. "
            "Convert with labels.astype(np.int32) if the values are whole numbers."
        )
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        shown = ", ".join(f"{name}[{i}]={arr[i]}" for i in bad[:5])
        more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
        raise LabelError(
            f"{bad.size} of {arr.size} {name} lie outside [0, {n_classes}): {shown}{more}. "
            "Check n_classes, or remap the labels to 0..n_classes-1."
        )
    return arr.astype(np.int32)


def is_concrete(x) -> bool:
    """True if ``x`` holds values Python can read now (not a tracer inside ``jit``/``vmap``).

    NumPy arrays, Python scalars and concrete ``jax.Array`` s are concrete; the abstract
    values ``jax.jit``, ``jax.vmap`` and ``jax.grad`` trace with are not.
    """
    return not isinstance(x, jax.core.Tracer)


def check_label_values(labels, n_classes: int, *, name: str = "labels", where: str = "") -> None:
    """Raise ``LabelError`` if any integer class id in ``labels`` lies outside ``[0, n_classes)``.

    Args:
      labels: concrete integer array-like of any shape (``()`` for one example).
      n_classes: ``C``, the number of classes (the scores' last dimension).
      name: what to call the array in the message.
      where: the function checking, prefixed to the message (``"softmax_cross_entropy"``).

    Raises:
      LabelError: values out of range; the message gives the first offending values and
        their positions and says what to do. Copies a device array to the host once.
    """
    arr = np.asarray(labels)
    mask = (arr < 0) | (arr >= n_classes)
    if np.any(mask):
        bad = [tuple(int(i) for i in idx) for idx in np.argwhere(mask)] if arr.ndim else [()]
        shown = ", ".join(
            f"{name}[{', '.join(map(str, idx))}]={arr[idx]}" if idx else f"{name}={arr}"
            for idx in bad[:5]
        )
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        prefix = f"{where}: " if where else ""
        raise LabelError(
            f"{prefix}{len(bad)} of {max(arr.size, 1)} {name} lie outside [0, {n_classes}): "
            f"{shown}{more}. Check n_classes, or remap the labels to 0..n_classes-1 "
            "(labels 1..C: subtract 1)."
        )


def check_labels_for_output(y, output_shape, *, name: str = "y") -> None:
    """The host-side label check for training loops: call once per ``fit``/``evaluate``.

    If ``y`` holds integer class ids for a classifier, i.e. ``y`` has an integer dtype
    and shape ``(N, ...)`` equal to ``output_shape`` without its last (class) axis, every
    id must lie in ``[0, C)`` with ``C = output_shape[-1]``. Any other ``y`` (float
    one-hot rows, regression targets, ``(N,)`` scores with ±1 labels) is left alone:
    this check cannot know the loss, and an ``(N, C)`` classifier with ``(N,)`` integer
    targets is the one case whose labels are certainly class ids.

    Args:
      y: concrete labels (NumPy or a concrete ``jax.Array``; tracers are skipped, since
        their values are unknown under ``jit``).
      output_shape: the model's output shape from ``init`` (leading ``-1`` allowed),
        e.g. ``(-1, 10)``.
      name: what to call ``y`` in the message.

    Raises:
      LabelError: an id outside ``[0, C)`` (e.g. labels 1..10 for 10 classes), naming
        the values and positions. Reads ``y`` on the host once (one copy from the device).
    """
    out = tuple(output_shape)
    if not is_concrete(y) or len(out) < 2:
        return
    dtype = getattr(y, "dtype", None) or np.asarray(y).dtype
    if not np.issubdtype(dtype, np.integer):
        return
    shape = tuple(np.shape(y))
    if len(shape) != len(out) - 1 or shape[1:] != out[1:-1]:
        return
    check_label_values(y, int(out[-1]), name=name)
