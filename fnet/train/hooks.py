"""Hooks called by ``fit`` between epochs: ``hook(epoch, params, state)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Hook", "every_k_epochs"]

Hook: TypeAlias = Callable[[int, Any, Any], Any]


def every_k_epochs(k: int, hook: Hook) -> Hook:
    """Wrap ``hook`` so that it runs only after epochs ``k, 2k, 3k, ...`` (1-based).

    E.g. ``fit(..., on_epoch_end=every_k_epochs(5, track))`` calls ``track(epoch, params, state)``
    after epochs 5, 10, ...
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"every_k_epochs: k must be a positive int, got {k!r}")

    def wrapped(epoch: int, params: Any, state: Any) -> Any:
        if epoch % k == 0:
            return hook(epoch, params, state)
        return None

    return wrapped
