"""Pure preprocessing functions: scaling, standardization, flattening, one-hot, splits.

:func:`scale_pixels`, :func:`standardize`, :func:`flatten` and :func:`one_hot` work on
NumPy arrays (and return NumPy) and on JAX arrays, including inside ``jax.jit``
(and return JAX). :func:`fit_standardizer` is computed eagerly in NumPy from the
training split only. :func:`train_val_split` and :func:`shuffle` draw their
permutation from a ``jax.random`` key, so they are deterministic for a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from fnet.datasets.dataset import Dataset
from fnet.errors import ShapeError
from fnet.validation import check_labels

__all__ = [
    "Standardizer",
    "fit_standardizer",
    "flatten",
    "one_hot",
    "scale_pixels",
    "shuffle",
    "standardize",
    "train_val_split",
]

T = TypeVar("T")
#: NumPy in, NumPy out; JAX (or a tracer under jit) in, JAX out.
ArrayT = TypeVar("ArrayT", np.ndarray, jax.Array)


def _xp(x: Any):
    """``jax.numpy`` for JAX arrays and tracers, else ``numpy``."""
    return jnp if isinstance(x, jax.Array) else np


def scale_pixels(x: ArrayT) -> ArrayT:
    """Map ``uint8`` pixels in ``[0, 255]`` to ``float32`` in ``[0, 1]`` (``x / 255``).

    Args:
      x: any shape, e.g. ``(N, 28, 28)`` or ``(N, 32, 32, 3)``, integer or float.

    Returns:
      Same shape, ``float32``.
    """
    xp = _xp(x)
    return xp.asarray(x).astype(xp.float32) / xp.float32(255.0)


class Standardizer(NamedTuple):
    """Per-feature ``mean`` and ``std`` (``float32``), with size-1 axes where reduced."""

    mean: Any
    std: Any


def fit_standardizer(
    train_x: Any, axis: int | Sequence[int] | None = 0, *, eps: float = 1e-6
) -> Standardizer:
    """Mean and standard deviation of the TRAINING inputs, for :func:`standardize`.

    Fit on the training split only and apply the result to every split, so no
    statistic of validation or test data leaks into training.

    Args:
      train_x: ``(N, ...)`` array, any real dtype (statistics are computed in float64).
      axis: axes to reduce; must include axis 0 (examples). ``0``: one statistic per
        feature/pixel; ``(0, 1, 2)`` on ``(N, H, W, C)``: per channel; ``None``: one
        scalar for everything.
      eps: standard deviations below ``eps`` (constant features such as MNIST's border
        pixels) are replaced by 1, so those features become 0 rather than NaN.

    Returns:
      ``Standardizer(mean, std)``: NumPy ``float32`` arrays with ``train_x.ndim`` axes,
      size 1 along the reduced ones (e.g. ``(1, 28, 28)`` for ``axis=0`` on MNIST).
    """
    x = np.asarray(train_x, dtype=np.float64)
    axes = tuple(range(x.ndim)) if axis is None else np.atleast_1d(axis).tolist()
    axes = tuple(a % x.ndim for a in axes)
    if 0 not in axes:
        raise ValueError(f"axis must include 0 (the example axis), got {axis}")
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    std = np.where(std < eps, 1.0, std)
    return Standardizer(mean.astype(np.float32), std.astype(np.float32))


def standardize(x: ArrayT, mean: Any, std: Any) -> ArrayT:
    """``(x - mean) / std`` with statistics from :func:`fit_standardizer`.

    Args:
      x: ``(N, ...)`` real array.
      mean, std: arrays broadcastable to ``x`` once leading size-1 axes are added (as
        returned by :func:`fit_standardizer` for data of the same rank).

    Returns:
      Same shape as ``x``, ``float32`` (or ``x``'s dtype if it is a wider float).
    """
    xp = _xp(x)
    x = xp.asarray(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(xp.float32)
    mean, std = xp.asarray(mean, x.dtype), xp.asarray(std, x.dtype)
    if mean.ndim > x.ndim or std.ndim > x.ndim:
        raise ShapeError(
            f"standardize: statistics of rank {mean.ndim} do not fit inputs of shape "
            f"{x.shape}; fit the standardizer on data of the same rank."
        )
    mean = mean.reshape((1,) * (x.ndim - mean.ndim) + mean.shape)
    std = std.reshape((1,) * (x.ndim - std.ndim) + std.shape)
    return (x - mean) / std


def flatten(x: ArrayT) -> ArrayT:
    """Reshape ``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)``, keeping the dtype."""
    xp = _xp(x)
    x = xp.asarray(x)
    if x.ndim < 1:
        raise ShapeError(f"flatten needs at least one (example) axis, got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def one_hot(labels: ArrayT, n_classes: int, dtype: Any = np.float32) -> ArrayT:
    """One-hot encode integer labels.

    NumPy labels are checked eagerly (:func:`fnet.validation.check_labels`: an
    out-of-range label raises LabelError). JAX labels are not checked (that is
    impossible under ``jit``): as in ``jax.nn.one_hot``, an out-of-range label gives a
    row of zeros.

    Args:
      labels: ``(N,)`` integers in ``[0, n_classes)``.
      n_classes: number of classes.
      dtype: output dtype, ``float32`` by default.

    Returns:
      ``(N, n_classes)`` array of ``dtype``.
    """
    if isinstance(labels, jax.Array):
        return jax.nn.one_hot(labels, n_classes, dtype=dtype)
    y = check_labels(labels, n_classes)
    return (y[:, None] == np.arange(n_classes, dtype=np.int32)[None, :]).astype(dtype)


def _n_examples(data: Any) -> int:
    if isinstance(data, Dataset):
        return len(data.inputs)
    if isinstance(data, (tuple, list)):
        if not data:
            raise ValueError("expected at least one array")
        sizes = {len(a) for a in data}
        if len(sizes) != 1:
            raise ShapeError(
                "arrays to split or shuffle must have the same length along axis 0, got "
                + ", ".join(str(len(a)) for a in data)
            )
        return sizes.pop()
    raise TypeError(f"expected an int, a Dataset or a tuple of arrays, got {type(data).__name__}")


def _take(data: Any, idx: np.ndarray, note: str) -> Any:
    if isinstance(data, Dataset):
        n = len(data.inputs)
        # Per-example metadata (such as the spiral's "t") follows its examples.
        info = {
            k: v[idx] if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n else v
            for k, v in data.info.items()
        }
        info["split"] = f"{info.get('split', '?')}[{note}]"
        return Dataset(data.inputs[idx], data.labels[idx], info)
    return type(data)(a[idx] for a in data)


def _permutation(key: jax.Array, n: int) -> np.ndarray:
    return np.asarray(jax.random.permutation(key, n)).astype(np.int64)


def shuffle(data: T, *, key: jax.Array) -> T:
    """Apply one random permutation, drawn from ``key``, to a Dataset or arrays.

    Args:
      data: a :class:`Dataset` or a tuple/list of arrays with equal length ``N``.
      key: ``jax.random`` key; the same key gives the same order.

    Returns:
      The same kind of object, each array reordered along axis 0 (shapes, dtypes kept).
    """
    return _take(data, _permutation(key, _n_examples(data)), "shuffled")


def train_val_split(data: Any, val_fraction: float, *, key: jax.Array) -> tuple[Any, Any]:
    """Split into training and validation parts by a random permutation from ``key``.

    ``round(val_fraction * N)`` examples (at least 1, at most ``N - 1``) go to
    validation; both parts come out shuffled. The same ``key`` and ``N`` always give
    the same split.

    Args:
      data: an int ``N`` (returns index arrays), a :class:`Dataset`, or a tuple/list of
        arrays with equal length ``N``.
      val_fraction: in ``(0, 1)``.
      key: ``jax.random`` key.

    Returns:
      ``(train, val)``: for an int, two ``int64`` index arrays ``(N - n_val,)`` and
      ``(n_val,)``; otherwise two objects of the same kind as ``data``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if isinstance(data, (int, np.integer)) and not isinstance(data, bool):
        n = int(data)
    else:
        n = _n_examples(data)
    if n < 2:
        raise ValueError(f"need at least 2 examples to split, got {n}")
    n_val = min(max(round(val_fraction * n), 1), n - 1)
    perm = _permutation(key, n)
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    if isinstance(data, (int, np.integer)):
        return train_idx, val_idx
    return _take(data, train_idx, "train"), _take(data, val_idx, "val")
