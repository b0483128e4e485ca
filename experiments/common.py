"""Compatibility names for scripts written against the old one-file ``common`` module.

The shared code is split by job: :mod:`experiments.cli` (options and the start-up
helper), :mod:`experiments.data` (datasets and where they are looked for),
:mod:`experiments.records` (``metrics.json``) and :mod:`experiments.plotting`
(figures). New code imports those; this module only re-exports their names.
"""

from __future__ import annotations

import os
from typing import Any

from experiments.cli import make_parser
from experiments.data import (
    REPO_ROOT,
    DataDirError,
    DataUnavailable,
    ImageData,
    load_image_data,
    load_spiral,
    spiral_info,
)
from experiments.plotting import (
    FIG_DPI,
    boundary_length,
    plot_decision_boundary,
    predict_grid,
    save_figure,
)
from experiments.records import Timer, device_description, write_metrics

__all__ = [
    "FIG_DPI",
    "REPO_ROOT",
    "DataDirError",
    "DataUnavailable",
    "ImageData",
    "MnistData",
    "Timer",
    "boundary_length",
    "device_description",
    "load_mnist",
    "load_spiral",
    "make_parser",
    "plot_decision_boundary",
    "predict_grid",
    "save_figure",
    "spiral_info",
    "write_metrics",
]

MnistData = ImageData


def load_mnist(
    data_dir: str | os.PathLike[str] | None, *, seed: int, download: bool = False, **cut: Any
) -> ImageData:
    """MNIST through :func:`experiments.data.load_image_data` (``cut``: ``max_train``,
    ``max_test``). Raises :class:`DataUnavailable` when it is not found."""
    return load_image_data("mnist", data_dir, seed=seed, download=download, **cut)
