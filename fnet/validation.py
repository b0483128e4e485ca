"""Eager checks of user data, to run once before training.

Under ``jax.jit`` fnet cannot raise on data-dependent conditions: an integer label
outside ``[0, n_classes)`` is not an error inside a compiled computation. What happens
then is documented per loss (``fnet.losses``): the one-hot of an out-of-range label is
all zeros, so that example contributes a wrong (not NaN) loss. Call
:func:`check_labels` on your data before training to catch it.
"""

from __future__ import annotations

import numpy as np

from fnet.errors import LabelError

__all__ = ["check_labels"]


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
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {type(n_classes).__name__}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
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
