"""The per-epoch progress bar of ``fit``: tqdm, off when nobody can see it.

Whether to draw is tqdm's own rule: ``tqdm.auto`` (a notebook widget inside Jupyter, text
elsewhere) with ``disable=None``, which turns the bar off when the stream is not a
terminal, so logs and CI stay clean.
"""

from __future__ import annotations

from typing import Any, TextIO

from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm as auto_tqdm

__all__ = ["ProgressBar", "progress_enabled"]


def progress_enabled(progress: bool | TextIO | None) -> bool | TextIO | None:
    """Check ``fit``'s ``progress=`` argument and return the setting for :class:`ProgressBar`.

    ``False`` or ``None``: no bar (returns ``None``). ``True``: a bar on ``sys.stderr``
    when it is a terminal or inside Jupyter (tqdm's ``disable=None``), else none. A file
    object (anything with ``write``): always a bar, there.

    Raises:
      TypeError: anything else.
    """
    if progress is False or progress is None:
        return None
    if progress is True or hasattr(progress, "write"):
        return progress
    raise TypeError(f"progress must be True, False or a file object, got {progress!r}")


class ProgressBar:
    """A bar of ``total`` epochs updated once per epoch with the latest metrics.

    Updates happen on the host between compiled epochs, so they never split an epoch.
    ``setting`` is what :func:`progress_enabled` returns: ``None`` (no bar, every method
    is a no-op), ``True`` (``tqdm.auto`` with ``disable=None``) or a file object.
    """

    def __init__(self, total: int, setting: bool | TextIO | None, desc: str = "fit") -> None:
        self._bar: Any = None
        kwargs: dict[str, Any] = dict(total=total, desc=desc, unit="epoch", leave=True)
        if setting is True:
            self._bar = auto_tqdm(disable=None, **kwargs)
        elif setting is not None and setting is not False:
            self._bar = text_tqdm(file=setting, **kwargs)

    def update(self, postfix: dict[str, float]) -> None:
        """Advance one epoch and show ``postfix`` (e.g. ``{"loss": 0.1, "acc": 0.97}``)."""
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Finish the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
