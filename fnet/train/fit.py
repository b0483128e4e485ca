"""``fit``: train for a number of epochs; how each epoch is compiled and run is
:class:`fnet.train.engine.EpochEngine`."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, TextIO

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from fnet import distributed
from fnet.train import resume
from fnet.train.engine import EpochEngine, StepsPerCall
from fnet.train.epoch import REMAINDERS, Remainder, batch_plan
from fnet.train.evaluate import compile_evaluation
from fnet.train.hooks import Hook
from fnet.train.objective import Objective
from fnet.train.progress import ProgressBar, progress_enabled
from fnet.train.step import TrainState
from fnet.train.validate import check_batch_size, check_xy

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """What :func:`fit` returns: ``params, state, opt_state, history = fit(...)``.

    ``history`` is a dict of per-epoch lists (one entry per epoch, in order):

    - ``epoch`` (1-based), ``steps`` (cumulative optimizer steps), ``examples_seen``
      (cumulative examples trained on);
    - ``train_<metric>`` for every metric of the objective plus ``train_objective``:
      the example-weighted mean over the epoch's steps (a running average while the
      params change, not the value at the end of the epoch), e.g. ``train_loss``,
      ``train_accuracy``;
    - ``val_<metric>`` (with ``validation``): metrics on the validation set after the
      epoch, ``train=False``;
    - ``epoch_time``: seconds of the training epoch alone (compiled call until done);
    - ``wall_time``: cumulative seconds since the first epoch began, validation and hooks
      included, compilation excluded;

    and one scalar, ``compile_time``: seconds spent tracing and compiling before the first
    epoch (near 0 when a previous ``fit`` call compiled the same computation).
    """

    params: Any
    state: Any
    opt_state: Any
    history: dict[str, Any]


def _takes_train(objective: Objective) -> bool:
    try:
        params = inspect.signature(objective).parameters
    except (TypeError, ValueError):  # builtins or C callables: assume it does
        return True
    return "train" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _check_args(epochs: Any, remainder: Any, key: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if remainder not in REMAINDERS:
        raise ValueError(f"fit: remainder must be one of {REMAINDERS}, got {remainder!r}")
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"fit: key must be a JAX PRNG key such as jax.random.key(0), got {type(key).__name__}"
        )


def _postfix(train: dict[str, float], val: dict[str, float]) -> dict[str, float]:
    shown: dict[str, float] = {}
    for prefix, metrics in (("", train), ("val_", val)):
        if "loss" in metrics:
            shown[f"{prefix}loss"] = metrics["loss"]
        elif "objective" in metrics:
            shown[f"{prefix}loss"] = metrics["objective"]
        if "accuracy" in metrics:
            shown[f"{prefix}acc"] = metrics["accuracy"]
    return shown


def fit(
    objective: Objective,
    params: Any,
    optimizer: optax.GradientTransformation,
    x: Any,
    y: Any,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    state: Any = None,
    opt_state: Any = None,
    remainder: Remainder = "keep",
    validation: tuple[Any, Any] | None = None,
    eval_batch_size: int = 1000,
    progress: bool | TextIO = True,
    on_epoch_end: Hook | Sequence[Hook] | None = None,
    mesh: Mesh | None = None,
    steps_per_call: StepsPerCall = "auto",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    every: int = 1,
    keep: int | None = 3,
) -> FitResult:
    """Minimise ``objective`` with ``optimizer`` for ``epochs`` epochs of mini-batches.

    Epoch ``e`` shuffles the ``N`` examples on the device (a permutation from
    ``fold_in(key, e)``), splits them into batches of ``batch_size`` and runs one
    optimizer step per batch, with no host work between steps; the metrics are summed on
    the device. How many steps one compiled call runs is ``steps_per_call``
    (:mod:`fnet.train.engine`): the whole epoch as one ``lax.scan``, or chunks of
    unrolled steps for convolutional models on CPU. ``batch_size=1`` is SGD,
    ``batch_size=N`` full-batch descent; both go through the same code.

    Tracing and compiling happen once, before the first epoch; a later ``fit`` with an
    equal ``objective`` (``supervised(...)`` objectives compare by value), the same
    ``optimizer`` object, batch size, remainder, driver and data shapes reuses the
    compiled code (no trace, no compile). Arrays already on the device are used as they
    are (not copied); the caller's ``params``/``state``/``opt_state`` stay valid.

    The same ``key`` gives bit-identical results on the same device and backend (CPU)
    for the same ``steps_per_call``; other drivers run the same steps on the same batches
    with the same keys and agree bit for bit for MLPs (and across int ``steps_per_call``
    for convnets), else to float rounding (``docs/design.md``).

    Args:
      objective: ``objective(params, state, x, y, key) -> (loss, (new_state, metrics))``,
        e.g. ``supervised(model, softmax_cross_entropy)``.
      params: initial params (not modified).
      optimizer: an optax ``GradientTransformation`` (``optax.sgd(0.1)``,
        ``optax.sgd(0.01, momentum=0.9)``, ``optax.adam(1e-3)``, ...).
      x: ``(N, ...)`` inputs. y: ``(N, ...)`` targets (e.g. ``(N,)`` int class ids).
      key: a JAX PRNG key: shuffling and per-step dropout keys derive from it.
      epochs: number of passes over the data (0 returns the inputs unchanged).
      batch_size: ``B``, with ``1 <= B <= N``.
      state: the model's state for a ``StatefulModel`` (``None`` -> ``{}``).
      opt_state: optimizer state to continue from (``None`` -> ``optimizer.init``).
      remainder: what to do with the ``N % B`` examples left over by full batches.
        ``"keep"`` (default): they form one smaller last batch, its own optimizer step
        with the mean gradient over that batch, so an epoch is every example exactly
        once. For a model with state (non-empty ``state``, e.g. BatchNorm, whose
        training-mode output on a single example is its offset whatever the input) a
        remainder of ONE example is instead merged into the last full batch, which then
        has ``B + 1`` examples (``N // B`` steps in all, every example still once).
        ``"drop"``: every epoch skips them (a different random subset each epoch) and
        has ``N // B`` equal steps.
      validation: optional ``(x_val, y_val)``; after each epoch the objective's metrics
        are computed on it with ``train=False`` (the objective must accept ``train=``).
      eval_batch_size: batch size for the validation pass (clipped to its size).
      progress: ``True``: a tqdm bar updated once per epoch with loss/accuracy, shown only
        on a terminal or in Jupyter; ``False``: none; a file object: always, there.
      on_epoch_end: a hook or list of hooks ``hook(epoch, params, state)`` called after
        each epoch (1-based ``epoch``); wrap with :func:`fnet.train.every_k_epochs` for every k
        epochs. The arrays stay valid (nothing is donated). Return values are ignored.
      mesh: a ``jax.sharding.Mesh`` for data parallelism (:mod:`fnet.distributed`,
        ``docs/parallel.md``): every step's batch is split over the mesh's ``"data"``
        axis, params/state/optimizer state are replicated (large matrices split over a
        ``"model"`` axis if the mesh has one), the data are copied to every device
        (global arrays sharded across hosts are used as they are) and XLA all-reduces
        the gradients. ``batch_size`` must be divisible by the data-axis size. Same
        results as without a mesh, up to the order of float additions.
      steps_per_call: how many optimizer steps one compiled call runs. ``"auto"``
        (default): ``fnet.train.engine.AUTO_CHUNK`` step(s) per call when the
        backend is CPU and the step has a convolution or pooling window (XLA:CPU runs
        those several times slower inside a loop), else ``"epoch"``. ``"epoch"``: the
        whole epoch in one call (a ``lax.scan``). An int ``K >= 1``: ``K`` unrolled steps
        per call (compile time grows with ``K``). The same steps, batches and keys
        whatever the choice (see above for the bits); each distinct chunk (the last one
        included) compiles once.
      checkpoint_dir: save a checkpoint (:mod:`fnet.checkpoint`, step = epochs done)
        every ``every`` epochs and after the last one, and RESUME from the latest
        checkpoint there if there is one: its params, state, optimizer state and history
        replace ``params``/``state``/``opt_state``, and training continues at the next
        epoch up to ``epochs`` in total. With the same ``key`` the result is
        bit-identical (on CPU) to an uninterrupted run. A checkpoint of another model,
        optimizer, key, ``N``, ``batch_size`` or ``remainder`` raises ``CheckpointError``.
      every: save every ``every`` epochs (with ``checkpoint_dir``).
      keep: keep the newest ``keep`` checkpoints (``None``: all).

    Returns:
      :class:`FitResult` ``(params, state, opt_state, history)``.

    Raises:
      ShapeError: ``x``/``y`` (or the validation pair) differ in length or lack a batch
        axis; the loss's ShapeError/LabelError for targets of the wrong rank or dtype
        (raised while tracing, before compiling).
      ValueError: ``batch_size`` not in ``[1, N]`` or not divisible by the mesh's data
        axis, bad ``epochs``, ``remainder``, ``steps_per_call``, ``every`` or ``keep``.
      CheckpointError: ``checkpoint_dir`` holds a checkpoint of another run (see above).
    """
    n = check_xy(x, y, "fit")
    batch_size = check_batch_size(batch_size, n, "fit")
    _check_args(epochs, remainder, key)
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("fit: validation must be a pair (x_val, y_val)")
        n_val = check_xy(*validation, "fit", what="x_val, y_val")
        check_batch_size(eval_batch_size, None, "fit(eval_batch_size)")
        if not _takes_train(objective):
            raise TypeError(
                "fit: validation needs an objective that accepts the keyword `train` "
                "(objective(params, state, x, y, key, *, train=True)); `supervised` does"
            )
    if on_epoch_end is None:
        hooks: list[Hook] = []
    elif callable(on_epoch_end):
        hooks = [on_epoch_end]
    else:
        hooks = list(on_epoch_end)
    ts = TrainState.create(params, optimizer, state=state, opt_state=opt_state)
    plan = batch_plan(n, batch_size, remainder, merge_single=bool(jax.tree.leaves(ts.state)))
    engine = EpochEngine(objective, optimizer, plan, steps_per_call=steps_per_call, mesh=mesh)
    history: dict[str, Any] = {
        "epoch": [], "steps": [], "examples_seen": [], "epoch_time": [], "wall_time": [],
        "compile_time": 0.0,
    }  # fmt: skip
    done, config = 0, resume.fit_config(n, batch_size, remainder)
    if checkpoint_dir is not None:
        resume.check_every(every, keep)
        done, ts, saved_history = resume.restore(checkpoint_dir, ts, key, config)
        history = saved_history or history
    if mesh is not None:
        distributed.check_divisible(batch_size, mesh)
    if epochs <= done:  # nothing to train (a resumed run may already be complete)
        ts = jax.device_put(ts) if done else ts
        return FitResult(ts.params, ts.state, ts.opt_state, history)

    if mesh is None:  # arrays already on the device are used as they are (no copy)
        ts, x, y, key = jax.device_put((ts, x, y, key))
    else:
        ts, key = distributed.place(ts, mesh), distributed.replicate(key, mesh)
        x, y = distributed.place_data((x, y), mesh)
    compile_time = engine.compile(ts, x, y, key)
    if validation is not None:
        x_val, y_val = jax.device_put(validation[0]), jax.device_put(validation[1])
        if mesh is not None:
            x_val, y_val = distributed.place_data((x_val, y_val), mesh)
        t0 = time.perf_counter()
        val_fn = compile_evaluation(
            ts.params, ts.state, x_val, y_val, objective=objective,
            batch_size=min(eval_batch_size, n_val), mesh=mesh,
        )  # fmt: skip
        compile_time += time.perf_counter() - t0
    history["compile_time"] = compile_time

    start = time.perf_counter() - (history["wall_time"][-1] if history["wall_time"] else 0.0)
    with ProgressBar(epochs - done, progress_enabled(progress)) as bar:
        for epoch in range(done, epochs):
            t = time.perf_counter()
            ts, sums = engine(ts, x, y, key, epoch)
            train = engine.means(sums)  # waits for the epoch (the sums come last)
            jax.block_until_ready(ts)
            history["epoch_time"].append(time.perf_counter() - t)
            val: dict[str, float] = {}
            if validation is not None:
                val_metrics = val_fn(ts.params, ts.state, x_val, y_val)
                val = {k: float(v) for k, v in jax.device_get(val_metrics).items()}
            for k, v in train.items():
                history.setdefault(f"train_{k}", []).append(v)
            for k, v in val.items():
                history.setdefault(f"val_{k}", []).append(v)
            history["epoch"].append(epoch + 1)
            history["steps"].append((epoch + 1) * plan.n_steps)
            history["examples_seen"].append((epoch + 1) * plan.examples)
            for hook in hooks:
                hook(epoch + 1, ts.params, ts.state)
            history["wall_time"].append(time.perf_counter() - start)
            if checkpoint_dir is not None and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                resume.save(checkpoint_dir, epoch + 1, ts, key, history, config, keep=keep)
            bar.update(_postfix(train, val))
    return FitResult(ts.params, ts.state, ts.opt_state, history)
