"""Eager argument checks for ``fit`` and ``evaluate``: clear errors before any compile."""

from __future__ import annotations

from typing import Any

import numpy as np

from fnet._checks import check_int
from fnet.errors import ShapeError

__all__ = ["check_batch_size", "check_xy"]


def check_xy(x: Any, y: Any, fn: str, what: str = "x, y") -> int:
    """Return ``N`` after checking that ``x`` and ``y`` both have a leading axis ``N >= 1``.

    Raises ``ShapeError`` (a ``ValueError``) otherwise.
    """
    xs, ys = np.shape(x), np.shape(y)
    names = what.split(", ")
    for name, shape in zip(names, (xs, ys), strict=True):
        if len(shape) == 0:
            raise ShapeError(f"{fn}: {name} needs a leading batch axis (N, ...), got a scalar")
    if xs[0] != ys[0]:
        raise ShapeError(
            f"{fn}: {names[0]} and {names[1]} must have the same number of examples, got "
            f"{names[0]}.shape={xs} and {names[1]}.shape={ys}"
        )
    if xs[0] == 0:
        raise ShapeError(f"{fn}: {names[0]} has no examples (shape {xs})")
    return int(xs[0])


def check_batch_size(batch_size: Any, n: int | None, fn: str) -> int:
    """``batch_size`` as an int after checking ``1 <= batch_size`` (and ``<= n`` when given).

    Raises:
      TypeError: ``batch_size`` is not an int (``True`` and ``2.0`` are not).
      ValueError: ``batch_size < 1``, or ``> n``.
    """
    batch_size = check_int(batch_size, f"{fn}: batch_size", minimum=1)
    if n is not None and batch_size > n:
        raise ValueError(
            f"{fn}: batch_size={batch_size} is larger than the {n} training examples; use "
            f"batch_size={n} for full-batch descent"
        )
    return int(batch_size)
