"""Batched evaluation of a classifier: loss, accuracy and error count over a dataset."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet.core import AnyModel, as_stateful
from fnet.losses import softmax_cross_entropy
from fnet.train.epoch import batched_sums
from fnet.train.objective import correct_predictions
from fnet.train.validate import check_batch_size, check_xy

__all__ = ["evaluate"]


@partial(jax.jit, static_argnames=("model", "loss_fn", "batch_size"))
def _sums(params, state, x, y, *, model, loss_fn, batch_size):
    apply = as_stateful(model).apply

    def fn(xb, yb):
        scores, _ = apply(params, state, xb, key=None, train=False)
        b = xb.shape[0]
        out = {"loss": jnp.asarray(loss_fn(scores, yb)) * b}
        right = correct_predictions(scores, yb)
        if right is not None:
            out["correct"] = jnp.sum(right, dtype=jnp.int32)
        return out

    return batched_sums(fn, x, y, batch_size)


def evaluate(
    model: AnyModel,
    params: Any,
    x: Any,
    y: Any,
    *,
    state: Any = None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
    batch_size: int = 1000,
) -> dict[str, float | int]:
    """Evaluate ``model`` on ``(x, y)`` in batches, with ``train=False``.

    One jitted computation scans over batches of ``batch_size``, so at most one batch of
    activations is live; when ``N`` is not a multiple of ``batch_size`` the last
    ``N % batch_size`` examples form one smaller batch, so every example counts exactly
    once. Compiled code is reused for the same model, loss, batch size and shapes.

    Args:
      model: an fnet ``Model`` or ``StatefulModel`` returning scores ``(N, C)``
        (or ``(N,)`` for a binary model with ``±1`` labels).
      params: the model's params. state: its state (``None`` -> ``{}``).
      x: ``(N, ...)`` inputs. y: ``(N,)`` integer class ids (or any targets ``loss_fn``
        accepts; then no accuracy is reported).
      loss_fn: ``loss_fn(scores, y) -> mean loss`` (default softmax cross-entropy).
      batch_size: examples per batch (clipped to ``N``).

    Returns:
      ``{"loss": float, "accuracy": float, "error_count": int, "n": int}``: the mean
      loss over the ``N`` examples, the fraction right and the number wrong
      (``accuracy``/``error_count`` only for class labels).

    Raises:
      ShapeError: ``x``/``y`` lengths differ or are not arrays with a batch axis.
      ValueError: ``batch_size`` not a positive int.
    """
    n = check_xy(x, y, "evaluate")
    check_batch_size(batch_size, None, "evaluate")
    x, y = jnp.asarray(x), jnp.asarray(y)  # on the device once (lists work too)
    state = {} if state is None else state
    sums = _sums(params, state, x, y, model=model, loss_fn=loss_fn, batch_size=min(batch_size, n))
    sums = jax.device_get(sums)
    out: dict[str, float | int] = {"loss": float(np.float64(sums["loss"]) / n)}
    if "correct" in sums:
        right = int(sums["correct"])
        out["accuracy"] = right / n
        out["error_count"] = n - right
    out["n"] = n
    return out
