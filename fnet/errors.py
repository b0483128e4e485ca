"""fnet's exception classes.

Each error says what was wrong and what to do about it. Every class derives from
:class:`FnetError` and from the built-in exception a caller would expect
(``ValueError`` for bad values, ``OSError`` for files), so ``except ValueError`` keeps
working in user code.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "DownloadError",
    "FnetError",
    "LabelError",
    "ShapeError",
]


class FnetError(Exception):
    """Base class of every error fnet raises on purpose."""


class ShapeError(FnetError, ValueError):
    """An array has the wrong shape for the layer, loss or function it was given to.

    ``path`` names the layer inside nested combinators (outermost first), e.g.
    ``("encoder", "dense_1")``; combinators prepend their child's name with
    :meth:`within` as the error travels up, so the final message says exactly which layer
    of which model failed.
    """

    def __init__(self, message: str, path: tuple[str, ...] = ()):
        self.message = message
        self.path = tuple(path)
        where = "/".join(self.path)
        super().__init__(f"layer '{where}': {message}" if where else message)

    def within(self, name: str) -> ShapeError:
        """The same error, one level further out: ``name`` is prepended to the path."""
        return ShapeError(self.message, (name, *self.path))


class LabelError(FnetError, ValueError):
    """Labels have the wrong dtype or rank, or lie outside ``[0, n_classes)``."""


class DataError(FnetError, ValueError):
    """A data file is corrupt, truncated, of the wrong format or fails its checksum."""


class DownloadError(FnetError, OSError):
    """A dataset could not be downloaded; the message says where to put the files instead."""


class CheckpointError(FnetError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the structure it is restored into."""
