"""The spiral toy task of SEEDS.md §1, generated with ``jax.random``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnet._checks import check_int
from fnet.datasets.dataset import Dataset

__all__ = ["spiral"]


def spiral(
    n_per_class: int,
    n_classes: int = 3,
    noise: float = 0.2,
    *,
    key: jax.Array,
    noise_on: str = "angle",
) -> Dataset:
    """``n_classes`` interleaved spiral arms in 2-D, ``n_per_class`` points each.

    Point ``i`` of class ``c = 1..C`` (label ``c - 1``) has parameter ``t`` evenly
    spaced on ``[0, 1]`` and lies at ``t * (sin(a), cos(a))`` with
    ``a = 2*pi/C * (2t + c - 1)``. With ``noise_on="angle"`` (the course's reference
    code, the default) ``a`` gets ``N(0, noise^2)`` added, so every point's radius is
    exactly ``t``; with ``noise_on="coords"`` the point gets ``N(0, noise^2)`` added to
    each coordinate instead.

    Args:
      n_per_class: points per class, >= 1.
      n_classes: ``C``, >= 1.
      noise: standard deviation of the noise, >= 0.
      key: a ``jax.random`` key; the same key gives the same data.
      noise_on: ``"angle"`` or ``"coords"``.

    Returns:
      ``Dataset``: inputs ``(n_per_class * n_classes, 2)`` ``float32``, labels
      ``(n_per_class * n_classes,)`` ``int32``, grouped by class (class 0 first; shuffle
      before mini-batch training). ``info["t"]`` is the ``float32`` parameter ``t`` of
      each point, i.e. its noiseless radius, in ``[0, 1]``.

    Raises:
      TypeError: ``n_per_class`` or ``n_classes`` is not an int (``True``, ``2.0``).
      ValueError: either is below 1; ``noise < 0`` (or NaN); a bad ``noise_on``.
    """
    n_per_class = check_int(n_per_class, "spiral: n_per_class", minimum=1)
    n_classes = check_int(n_classes, "spiral: n_classes", minimum=1)
    if not noise >= 0:
        raise ValueError(f"noise must be a standard deviation >= 0, got {noise}")
    if noise_on not in ("angle", "coords"):
        raise ValueError(f"noise_on must be 'angle' or 'coords', got {noise_on!r}")
    n = n_per_class * n_classes
    # One jax.random draw (the only step that needs JAX); the rest is exact float32
    # NumPy, so a new size costs one small compilation rather than one per operation.
    eps = np.asarray(jax.random.normal(key, (n, 2), dtype=jnp.float32)) * np.float32(noise)
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), n_per_class)
    t = np.tile(np.linspace(0.0, 1.0, n_per_class, dtype=np.float32), n_classes)
    # a = 2*pi/C * (2t + c - 1) with c = label + 1.
    angle = np.float32(2 * np.pi / n_classes) * (2 * t + labels.astype(np.float32))
    if noise_on == "angle":
        angle = angle + eps[:, 0]
    points = t[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
    if noise_on == "coords":
        points = points + eps
    info = {
        "name": "spiral",
        "split": "all",
        "n_classes": n_classes,
        "class_names": tuple(str(k) for k in range(n_classes)),
        "files": [],
        "verified": True,
        "subset": False,
        "noise": float(noise),
        "noise_on": noise_on,
        "t": t,
    }
    return Dataset(points.astype(np.float32), labels, info)
