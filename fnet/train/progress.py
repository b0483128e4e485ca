"""The per-epoch progress bar of ``fit`` (tqdm), off when nobody can see it."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["ProgressBar", "progress_enabled"]


def progress_enabled(progress: bool | TextIO) -> TextIO | None:
    """Where to draw the bar, or ``None`` for no bar.

    ``False``: none. ``True``: ``sys.stderr`` if it is a terminal or we run inside a
    Jupyter kernel, else none (logs and CI stay clean). A file object: always, there.
    """
    if progress is False or progress is None:
        return None
    if progress is True:
        stream = sys.stderr
        interactive = "ipykernel" in sys.modules or bool(getattr(stream, "isatty", lambda: False)())
        return stream if interactive else None
    if hasattr(progress, "write"):
        return progress
    raise TypeError(f"progress must be True, False or a file object, got {progress!r}")


class ProgressBar:
    """A bar of ``total`` epochs updated once per epoch with the latest metrics.

    Updates happen on the host between compiled epochs, so they never split an epoch.
    A no-op when ``file`` is ``None``.
    """

    def __init__(self, total: int, file: TextIO | None, desc: str = "fit") -> None:
        self._bar: Any = None
        if file is not None:
            self._bar = tqdm(total=total, desc=desc, unit="epoch", file=file, leave=True)

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
