"""One evaluator: an objective's metrics over a dataset, in batches, with ``train=False``.

:func:`evaluate_objective` is what ``fit`` runs on its validation set after each epoch;
:func:`evaluate` is the same computation for a model and a loss, reported as loss,
accuracy and error count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fnet import _xla, distributed
from fnet.core import AnyModel
from fnet.losses import softmax_cross_entropy
from fnet.train.engine import compiled
from fnet.train.epoch import batched_sums
from fnet.train.objective import Metrics, Objective, supervised
from fnet.train.step import sharded_objective
from fnet.train.validate import check_batch_size, check_xy

__all__ = ["evaluate", "evaluate_objective"]


def _as_float(v: jax.Array) -> jax.Array:
    v = jnp.asarray(v)
    return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.float32)


def _metric_sums_of(params, state, x, y, *, objective, batch_size):
    def fn(xb, yb):
        loss, (_, metrics) = objective(params, state, xb, yb, None, train=False)
        b = xb.shape[0]
        return {k: _as_float(v) * b for k, v in {**metrics, "objective": loss}.items()}

    return batched_sums(fn, x, y, batch_size)


# evaluate_objective calls it (a jax.jit: it also runs under another transformation and
# follows committed devices); fit compiles its validation pass ahead of time from
# `.plain` through fnet.train.engine's cache (compile_evaluation).
_metric_sums = _xla.ConvAwareJit(_metric_sums_of, static_argnames=("objective", "batch_size"))


def evaluate_objective(
    params: Any,
    state: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    objective: Objective,
    batch_size: int,
    mesh: Mesh | None = None,
) -> Metrics:
    """The objective's metrics (and ``"objective"``) averaged over all of ``(x, y)``.

    Calls ``objective(params, state, xb, yb, None, train=False)`` on consecutive batches
    of ``batch_size`` (the last one smaller if needed; one jitted scan, one batch of
    activations live) and weights each batch's metrics by its size, so the result is the
    mean over examples for per-batch-mean metrics. Compiled code is reused for the same
    objective (by equality), batch size and shapes.

    Args:
      params, state: the model's params and state (``{}`` for stateless models).
      x: ``(N, ...)`` inputs. y: ``(N, ...)`` targets.
      objective: an :class:`~fnet.train.objective.Objective` accepting ``train=``.
      batch_size: examples per batch, ``1 <= batch_size <= N``.
      mesh: a ``jax.sharding.Mesh``: each batch is split over its data axis (``x``/``y``
        and ``params``/``state`` placed with :mod:`fnet.distributed` first).

    Returns:
      A dict of device scalars (float32 for float32 models), the objective's metrics and
      ``"objective"`` (the objective's value).
    """
    objective = _on_mesh(objective, mesh)
    sums = _metric_sums(params, state, x, y, objective=objective, batch_size=batch_size)
    return _means(sums, x.shape[0])


def compile_evaluation(
    params: Any,
    state: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    objective: Objective,
    batch_size: int,
    mesh: Mesh | None = None,
) -> Callable[[Any, Any, jax.Array, jax.Array], Metrics]:
    """:func:`evaluate_objective` compiled for these shapes: ``run(params, state, x, y)``.

    ``fit`` compiles its validation pass with it before the first epoch; the executable
    is cached (a later call with like arguments compiles nothing).
    """
    objective = _on_mesh(objective, mesh)
    sums = compiled(
        _metric_sums.plain, params, state, x, y, objective=objective, batch_size=batch_size
    )

    def run(params: Any, state: Any, x: jax.Array, y: jax.Array) -> Metrics:
        return _means(sums(params, state, x, y), x.shape[0])

    return run


def _on_mesh(objective: Objective, mesh: Mesh | None) -> Objective:
    return objective if mesh is None else sharded_objective(objective, mesh)


def _means(sums: Metrics, n: int) -> Metrics:
    """Example-weighted sums -> means over the ``n`` examples."""
    return {k: v / n for k, v in sums.items()}


def evaluate(
    model: AnyModel,
    params: Any,
    x: Any,
    y: Any,
    *,
    state: Any = None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
    batch_size: int = 1000,
    mesh: Mesh | None = None,
) -> dict[str, float | int]:
    """Evaluate ``model`` on ``(x, y)`` in batches, with ``train=False``.

    :func:`evaluate_objective` of ``supervised(model, loss_fn)``: one jitted computation
    scans over batches of ``batch_size``, so at most one batch of activations is live;
    when ``N`` is not a multiple of ``batch_size`` the last ``N % batch_size`` examples
    form one smaller batch, so every example counts exactly once. Compiled code is reused
    for the same model, loss, batch size and shapes.

    Args:
      model: an fnet ``Model`` or ``StatefulModel`` returning scores ``(N, C)``
        (or ``(N,)`` for a binary model with ``±1`` labels).
      params: the model's params. state: its state (``None`` -> ``{}``).
      x: ``(N, ...)`` inputs. y: ``(N,)`` integer class ids (or any targets ``loss_fn``
        accepts; then no accuracy is reported).
      loss_fn: ``loss_fn(scores, y) -> mean loss`` (default softmax cross-entropy).
      batch_size: examples per batch (clipped to ``N``).
      mesh: a ``jax.sharding.Mesh``: the data are copied to its devices and each batch
        split over its data axis (``batch_size`` then must divide evenly, see
        :func:`fnet.distributed.check_divisible`).

    Returns:
      ``{"loss": float, "accuracy": float, "error_count": int, "n": int}``: the mean
      loss over the ``N`` examples, the fraction right and the number wrong
      (``accuracy``/``error_count`` only for class labels).

    Raises:
      ShapeError: ``x``/``y`` lengths differ or are not arrays with a batch axis.
      LabelError: integer class labels outside ``[0, C)`` for the model's ``C``
        outputs (checked once on the host).
      TypeError: ``batch_size`` is not an int (``True`` and ``2.0`` are not).
      ValueError: ``batch_size < 1``, or not divisible by the mesh's data axis.
    """
    n = check_xy(x, y, "evaluate")
    check_batch_size(batch_size, None, "evaluate")
    batch_size = min(batch_size, n)
    state = {} if state is None else state
    objective = supervised(model, loss_fn)
    objective.check_targets(params, state, x, y)
    if mesh is None:
        x, y = jnp.asarray(x), jnp.asarray(y)  # on the device once (lists work too)
    else:
        distributed.check_divisible(batch_size, mesh)
        x, y = distributed.place_data((jnp.asarray(x), jnp.asarray(y)), mesh)
        params, state = distributed.replicate((params, state), mesh)
    means = evaluate_objective(
        params, state, x, y, objective=objective, batch_size=batch_size, mesh=mesh
    )
    means = jax.device_get(means)
    out: dict[str, float | int] = {"loss": float(np.float64(means["loss"]))}
    if "accuracy" in means:
        right = int(np.rint(np.float64(means["accuracy"]) * n))
        out["accuracy"] = right / n
        out["error_count"] = n - right
    out["n"] = n
    return out
