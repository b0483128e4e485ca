"""Figures of the experiments: saving small PNGs and drawing 2-D decision boundaries.

No backend is forced here: matplotlib picks a non-interactive one (Agg) when there is no
display, and a caller who wants another sets it before importing this module.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

__all__ = [
    "FIG_DPI",
    "boundary_length",
    "plot_decision_boundary",
    "predict_grid",
    "save_figure",
]

FIG_DPI = 90


def save_figure(fig: Any, out: str | os.PathLike[str], filename: str) -> str:
    """Save ``fig`` as a PNG in ``out`` (small: dpi 90), close it, return the file name."""
    path = pathlib.Path(out) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    return filename


def predict_grid(
    predict: Callable[[jax.Array], jax.Array],
    extent: tuple[float, float, float, float] = (-1.25, 1.25, -1.25, 1.25),
    resolution: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted classes on a ``resolution x resolution`` grid over ``extent``.

    ``predict(points (M, 2) float32) -> scores (M, C)``. Returns ``(xx, yy, classes)``,
    each ``(resolution, resolution)``.
    """
    x0, x1, y0, y1 = extent
    xs = np.linspace(x0, x1, resolution, dtype=np.float32)
    ys = np.linspace(y0, y1, resolution, dtype=np.float32)
    xx, yy = np.meshgrid(xs, ys)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    scores = np.asarray(predict(jnp.asarray(points)))
    return xx, yy, scores.argmax(axis=1).reshape(xx.shape)


def boundary_length(classes: np.ndarray, extent: tuple[float, float, float, float]) -> float:
    """Length of the decision boundary on a grid of predicted ``classes``, in data units.

    Counts horizontally and vertically adjacent grid cells with different classes and
    multiplies by the cell size: a jagged boundary is longer than a smooth one that
    separates the same regions.
    """
    rows, cols = classes.shape
    dx = (extent[1] - extent[0]) / (cols - 1)
    dy = (extent[3] - extent[2]) / (rows - 1)
    horizontal = np.count_nonzero(classes[:, 1:] != classes[:, :-1])
    vertical = np.count_nonzero(classes[1:, :] != classes[:-1, :])
    # A horizontal change is crossed by a boundary segment of height dy, and vice versa.
    return float(horizontal * dy + vertical * dx)


_CLASS_COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd")


def plot_decision_boundary(
    ax: Any,
    predict: Callable[[jax.Array], jax.Array],
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str = "",
    extent: tuple[float, float, float, float] = (-1.25, 1.25, -1.25, 1.25),
    resolution: int = 200,
) -> np.ndarray:
    """Shade the predicted class of a 2-D model over ``extent`` and scatter ``(x, y)``.

    Returns the grid of predicted classes (for :func:`boundary_length`).
    """
    xx, yy, classes = predict_grid(predict, extent, resolution)
    n_classes = int(max(classes.max(), y.max())) + 1
    cmap = ListedColormap(_CLASS_COLORS[:n_classes])
    ax.contourf(xx, yy, classes, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.3)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, s=8, edgecolors="k", linewidths=0.3)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return classes
