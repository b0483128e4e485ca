"""Eager checks of configuration arguments (sizes, counts, steps), one message format.

Python's ``bool`` is a subclass of ``int`` and NumPy integers are not ``int``, so the
check "a whole number of at least ``k``" is easy to get wrong by hand: ``True`` would pass
as ``1`` and ``np.int64(3)`` would fail. :func:`check_int` is the one place fnet writes it.
It runs in Python before anything is traced, compiled or written to disk.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

__all__ = ["check_int"]


@overload
def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    none_ok: Literal[False] = ...,
) -> int: ...


@overload
def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = ...,
    maximum: int | None = ...,
    none_ok: bool,
) -> int | None: ...


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    none_ok: bool = False,
) -> int | None:
    """``value`` as a Python ``int`` if it is a whole number in ``[minimum, maximum]``, else raise.

    Accepts ``int`` and NumPy integer scalars (``np.int64(3)``); rejects ``bool``
    (``True`` is not a size), floats (also ``3.0``), strings and arrays. The message names
    the argument, the value given (and its type) and what is allowed, e.g.
    ``"keep must be None or an int >= 1, got True of type bool"`` or
    ``"n_devices must be in [1, 8], got 9"``.

    Args:
      value: the argument to check.
      name: the argument's name as the caller spells it, used in the message
        (e.g. ``"chunk_size"`` or ``"Tracker: every"``).
      minimum: the smallest allowed value, or ``None`` for no lower bound.
      maximum: the largest allowed value, or ``None`` for no upper bound.
      none_ok: also accept ``None`` (returned as is), e.g. for "keep everything".

    Returns:
      ``int(value)``, or ``None`` when ``value is None`` and ``none_ok``.

    Raises:
      TypeError: ``value`` is not an integer (or is a ``bool``; or is ``None`` without
        ``none_ok``).
      ValueError: ``value < minimum`` or ``value > maximum``.
    """
    if value is None and none_ok:
        return None
    if minimum is not None and maximum is not None:
        bound = f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        bound = f" >= {minimum}"
    elif maximum is not None:
        bound = f" <= {maximum}"
    else:
        bound = ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        allowed = f"None or an int{bound}" if none_ok else f"an int{bound}"
        raise TypeError(f"{name} must be {allowed}, got {value!r} of type {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be{bound}, got {value!r}")
    return int(value)
