"""The :class:`Dataset` named tuple that every fnet loader returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["Dataset"]


class Dataset(NamedTuple):
    """Inputs, labels and a plain ``dict`` describing where they came from.

    Attributes:
      inputs: ``np.ndarray`` with the examples along axis 0. Loaders return the raw
        pixels, ``uint8``: MNIST and Fashion-MNIST ``(N, 28, 28)``, CIFAR-10
        ``(N, 32, 32, 3)`` (NHWC). :func:`fnet.datasets.spiral` returns ``float32``
        ``(N, 2)``. Convert with :func:`fnet.datasets.scale_pixels` and friends.
      labels: ``np.ndarray`` of shape ``(N,)``, dtype ``int32``, values in
        ``[0, info["n_classes"])``.
      info: metadata. Keys set by every loader: ``name``, ``split``, ``n_classes``,
        ``class_names``, ``files`` (paths read, as strings), ``verified`` (``True`` when
        every file matched its published checksum), ``subset`` (``True`` when the data is
        not the complete official split).
    """

    inputs: np.ndarray
    labels: np.ndarray
    info: dict[str, Any]

    def __repr__(self) -> str:
        name = self.info.get("name", "?")
        split = self.info.get("split", "?")
        return (
            f"Dataset(name={name!r}, split={split!r}, "
            f"inputs={self.inputs.dtype}{list(self.inputs.shape)}, "
            f"labels={self.labels.dtype}{list(self.labels.shape)})"
        )
