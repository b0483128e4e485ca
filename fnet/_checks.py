"""Eager checks of configuration arguments (sizes, counts, steps), one message format.

Python's ``bool`` is a subclass of ``int`` and NumPy integers are not ``int``, so the
check "a whole number of at least ``k``" is easy to get wrong by hand: ``True`` would pass
as ``1`` and ``np.int64(3)`` would fail. :func:`check_int` is the one place fnet writes it.
It runs in Python before anything is traced, compiled or written to disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int"]


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python ``int`` if it is a whole number ``>= minimum``, else raise.

    Accepts ``int`` and NumPy integer scalars (``np.int64(3)``); rejects ``bool``
    (``True`` is not a size), floats (also ``3.0``), strings and arrays.

    Args:
      value: the argument to check.
      name: the argument's name as the caller spells it, used in the message
        (e.g. ``"chunk_size"`` or ``"Tracker: every"``).
      minimum: the smallest allowed value, or ``None`` for no lower bound.

    Returns:
      ``int(value)``.

    Raises:
      TypeError: ``value`` is not an integer (or is a ``bool``).
      ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise TypeError(
            f"{name} must be an int{bound}, got {value!r} of type {type(value).__name__}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)
