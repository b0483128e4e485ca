"""Batched prediction: a model's outputs for a whole dataset, one batch live at a time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _xla
from fnet.chunking import scan_chunks
from fnet.core import AnyModel, as_stateful, is_stateful
from fnet.errors import ShapeError
from fnet.train.validate import check_batch_size

__all__ = ["predict"]


def _predict_batches(
    params: Any, state: Any, x: jax.Array, *, model: AnyModel, batch_size: int
) -> Any:
    apply = as_stateful(model).apply

    def run(_, xb, i):
        out, _ = apply(params, state, xb, key=None, train=False)
        return None, out

    return scan_chunks(run, None, x, batch_size, stack="rows")[1]


# One jitted scan; on CPU, a model with convolutions compiles with fnet's compiler
# options (fnet._xla); under another transformation it is a plain jax.jit.
_predict = _xla.ConvAwareJit(_predict_batches, static_argnames=("model", "batch_size"))


def predict(
    model: AnyModel,
    params: Any,
    x: Any,
    *,
    state: Any = None,
    batch_size: int = 1000,
) -> Any:
    """The model's outputs ``model.apply(params, x, train=False)`` for all ``N`` examples.

    One jitted computation scans ``model.apply`` over consecutive batches of
    ``batch_size`` examples (the last ``N % batch_size`` form one smaller batch, no
    padding), so at most one batch of activations is live; the outputs are concatenated
    along the first axis. Equal to ``model.apply(params, x)`` up to float rounding of the
    batched kernels (exactly equal for per-example layers on CPU). Compiled code is
    reused for the same model, batch size and shapes. A ``StatefulModel``'s state is
    read, not updated (``train=False``: BatchNorm uses its running statistics).

    Args:
      model: an fnet ``Model`` or ``StatefulModel``.
      params: its params. state: its state (``None`` -> ``{}``; needed for stateful models).
      x: ``(N, ...)`` inputs (array-like; put on the device once).
      batch_size: examples per batch, ``>= 1`` (clipped to ``N``).

    Returns:
      The outputs with leading axis ``N``: e.g. scores ``(N, C)`` for a classifier
      (``argmax(-1)`` gives the predicted classes), in the model's output dtype; a pytree
      of such arrays if the model returns one.

    Raises:
      ShapeError: ``x`` has no leading batch axis or no examples.
      TypeError: ``batch_size`` is not an int.
      ValueError: ``batch_size < 1``, or a stateful model has no state.
    """
    shape = np.shape(x)
    if len(shape) == 0 or shape[0] == 0:
        raise ShapeError(f"predict: x needs a leading batch axis with examples, got shape {shape}")
    check_batch_size(batch_size, None, "predict")
    state = {} if state is None else state
    if is_stateful(model) and not jax.tree.leaves(state):
        raise ValueError(
            "predict: this model has state (e.g. BatchNorm running statistics); pass "
            "state=... (from model.init, or the state fit returned)"
        )
    batch_size = min(batch_size, shape[0])
    return _predict(params, state, jnp.asarray(x), model=model, batch_size=batch_size)
