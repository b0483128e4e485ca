"""``fit``: train for a number of epochs; how each epoch is compiled and run is
:class:`fnet.train.engine.EpochEngine`."""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, TextIO

import jax
import optax
from jax.sharding import Mesh

from fnet import distributed
from fnet._checks import check_int
from fnet.train.engine import EpochEngine, StepsPerCall
from fnet.train.epoch import REMAINDERS, Remainder, batch_plan
from fnet.train.evaluate import compile_evaluation
from fnet.train.guard import NonFiniteError, NonFiniteWarning, describe_nonfinite
from fnet.train.hooks import Hook, StopTraining, takes_history
from fnet.train.objective import Objective
from fnet.train.progress import ProgressBar, progress_enabled
from fnet.train.resume import FitCheckpoints, Resume, model_description, run_fingerprint
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
    - ``wall_time``: cumulative seconds since the first epoch began, up to the end of
      this epoch's validation (hooks of earlier epochs included), compilation excluded;

    two scalars, ``compile_time``: seconds spent tracing and compiling before the first
    epoch (near 0 when a previous ``fit`` call compiled the same computation), and
    ``steps_per_call``: the driver that ran, ``"epoch"`` or the int ``K`` (what
    ``"auto"`` chose); and, when a hook stopped training, ``stopped``: its reason.
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
    check_int(epochs, "fit: epochs", minimum=0)
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
    resume: Resume = "auto",
    extra: dict[str, Any] | None = None,
    on_nonfinite: Literal["raise", "warn"] = "raise",
) -> FitResult:
    """Minimise ``objective`` with ``optimizer`` for ``epochs`` epochs of mini-batches.

    Epoch ``e`` shuffles the ``N`` examples on the device (a permutation from
    ``fold_in(key, e)``), splits them into batches of ``batch_size`` and runs one
    optimizer step per batch, with no host work between steps; the metrics are summed on
    the device. How many steps one compiled call runs is ``steps_per_call``
    (:mod:`fnet.train.engine`): the whole epoch as one ``lax.scan``, or chunks of
    unrolled steps. ``batch_size=1`` is SGD,
    ``batch_size=N`` full-batch descent; both go through the same code.

    Tracing and compiling happen once, before the first epoch; a later ``fit`` with an
    equal ``objective`` (``supervised(...)`` objectives compare by value), the same
    ``optimizer`` object, batch size, remainder, driver and data shapes reuses the
    compiled code (no trace, no compile). Arrays already on the device are used as they
    are (not copied); the caller's ``params``/``state``/``opt_state`` stay valid.

    The same ``key`` gives bit-identical results on the same device and backend, whatever
    ``steps_per_call`` (every driver runs the same steps on the same batches with the
    same keys; tested on CPU for dense, convolutional and BatchNorm + Dropout models, see
    :mod:`fnet.train.engine` for what makes XLA compile a step alike in every driver).

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
      on_epoch_end: a hook or list of hooks ``hook(epoch, params, state)`` called in
        order after each epoch (1-based ``epoch``); a hook with a keyword ``history`` also
        gets the history so far (this epoch included). Wrap with
        :func:`fnet.train.every_k_epochs` for every k epochs. The arrays stay valid
        (nothing is donated). A hook returning :class:`~fnet.train.hooks.StopTraining`
        stops ``fit`` after this epoch (the remaining hooks still run, the checkpoint is
        saved, ``history["stopped"]`` holds the reason, and its ``params``/``state``, if
        given, are returned); other return values are ignored. Ready-made:
        :class:`~fnet.train.EarlyStopping`, :class:`~fnet.train.KeepBest`,
        :class:`~fnet.train.JSONLLogger`, :class:`~fnet.train.CSVLogger`,
        :class:`~fnet.train.TensorBoardLogger`.
      mesh: a ``jax.sharding.Mesh`` for data parallelism (:mod:`fnet.distributed`,
        ``docs/parallel.md``): every step's batch is split over the mesh's ``"data"``
        axis, params/state/optimizer state are replicated (large matrices split over a
        ``"model"`` axis if the mesh has one), the data are copied to every device
        (global arrays sharded across hosts are used as they are) and XLA all-reduces
        the gradients. ``batch_size`` must be divisible by the data-axis size. Same
        results as without a mesh, up to the order of float additions.
      steps_per_call: how many optimizer steps one compiled call runs. ``"auto"``
        (default): ``"epoch"``, except on CPU for a step with a convolution XLA:CPU runs
        ~10x slower inside a loop (a non-canonical one, e.g. ``lax.conv_general_dilated``
        written by hand; never fnet's ``Conv2D``), then
        ``fnet.train.engine.AUTO_CHUNK`` step(s) per call. ``"epoch"``: the whole epoch
        in one call (a ``lax.scan``). An int ``K >= 1``: ``K`` unrolled steps per call
        (compile time grows with ``K``; ``K - 1`` extra copies of the train state live
        while a call runs). The same bits whatever the choice; each distinct chunk (the
        last one included) compiles once. ``history["steps_per_call"]`` says which ran.
      checkpoint_dir: save a checkpoint (:mod:`fnet.checkpoint`, step = epochs done;
        layout in :mod:`fnet.train.resume`) every ``every`` epochs and after the last
        one, and RESUME from the latest checkpoint there if it is of the same run: its
        params, state, optimizer state and history replace ``params``/``state``/
        ``opt_state``, one line ``fit: resuming from epoch 3 of 10 (DIR)`` goes to
        stderr, and training continues at the next epoch up to ``epochs`` in total.
        With the same ``key`` the result is bit-identical (on CPU) to an uninterrupted
        run. "The same run" is checked with a fingerprint stored in the checkpoint:
        model (layer kinds, configuration and code), objective, optimizer
        hyperparameters (read from its closures and ``optax.inject_hyperparams`` state),
        data shapes and dtypes, ``batch_size``, ``remainder``, ``key`` and ``extra``
        (:func:`~fnet.train.resume.run_fingerprint`; the data VALUES are not compared).
        ``epochs`` may grow between calls; ``steps_per_call`` and ``mesh`` may change.
      every: save every ``every`` epochs (with ``checkpoint_dir``).
      keep: keep the newest ``keep`` checkpoints of this run (``None``: all), and always
        the newest one with finite loss and params; checkpoints of another run are never
        deleted.
      resume: what to do with a checkpoint of ANOTHER run in ``checkpoint_dir``:
        ``"auto"`` (default) raises ``CheckpointError`` naming the differences;
        ``"force"`` resumes it anyway (printing the differences; the shapes must still
        match); ``"fresh"`` starts at epoch 0 and deletes that directory's checkpoints
        (only ones written by ``fit``) when the first new one is saved.
      extra: a JSON-serialisable dict stored in every checkpoint (e.g. the model's
        constructor arguments, for rebuilding it), returned by
        :func:`~fnet.train.restore_params`; part of the fingerprint.
      on_nonfinite: ``"raise"`` (default): the first epoch whose loss/metrics or params
        are NaN or infinite raises :class:`~fnet.train.NonFiniteError` (naming the epoch
        and its steps) before hooks run or a checkpoint is saved for it, so the newest
        checkpoint stays the last finite one; the error carries ``history`` (that epoch
        included) and ``result`` (the :class:`FitResult` after the last finite epoch).
        ``"warn"``: a :class:`~fnet.train.NonFiniteWarning` per such epoch, and go on.

    Returns:
      :class:`FitResult` ``(params, state, opt_state, history)``.

    Raises:
      ShapeError: ``x``/``y`` (or the validation pair) differ in length or lack a batch
        axis; the loss's ShapeError/LabelError for targets of the wrong rank or dtype
        (raised while tracing, before compiling).
      LabelError: with a ``supervised`` objective (anything with a ``check_targets``
        method), integer class labels in ``y`` or ``y_val`` outside ``[0, C)`` for the
        model's ``C`` outputs (e.g. labels 1..10 for 10 classes); checked once on the
        host before compiling.
      TypeError: ``batch_size``, ``epochs``, ``every``, ``keep`` or an int
        ``steps_per_call`` is not an int (``True`` and ``2.0`` are not; ``keep`` may be
        ``None``); ``key`` is not a PRNG key.
      ValueError: ``batch_size`` not in ``[1, N]`` or not divisible by the mesh's data
        axis, ``epochs < 0``, ``every``/``keep`` below 1, bad ``remainder``,
        ``steps_per_call``, ``resume``, ``on_nonfinite``, or an ``extra`` that is not
        JSON-serialisable.
      CheckpointError: ``checkpoint_dir`` holds a checkpoint of another run (the
        differences are named), one not written by ``fit``, or a run that already
        trained more than ``epochs`` epochs. Raised before anything on disk changes.
      NonFiniteError: a non-finite epoch with ``on_nonfinite="raise"`` (see above).
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
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"fit: on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    if on_epoch_end is None:
        hooks: list[Hook] = []
    elif callable(on_epoch_end):
        hooks = [on_epoch_end]
    else:
        hooks = list(on_epoch_end)
    with_history = [takes_history(h) for h in hooks]
    ts = TrainState.create(params, optimizer, state=state, opt_state=opt_state)
    check_targets = getattr(objective, "check_targets", None)
    if check_targets is not None:  # concrete labels, checked on the host before compiling
        check_targets(ts.params, ts.state, x, y, name="y")
        if validation is not None:
            check_targets(ts.params, ts.state, *validation, name="y_val")
    plan = batch_plan(n, batch_size, remainder, merge_single=bool(jax.tree.leaves(ts.state)))
    engine = EpochEngine(objective, optimizer, plan, steps_per_call=steps_per_call, mesh=mesh)
    history: dict[str, Any] = {
        "epoch": [], "steps": [], "examples_seen": [], "epoch_time": [], "wall_time": [],
        "compile_time": 0.0,
    }  # fmt: skip
    done, ckpts = 0, None
    if checkpoint_dir is not None:
        fingerprint = run_fingerprint(
            objective, optimizer, ts.opt_state, x, y,
            batch_size=batch_size, remainder=remainder, key=key, extra=extra,
        )  # fmt: skip
        ckpts = FitCheckpoints(
            checkpoint_dir, fingerprint, epochs=epochs, every=every, keep=keep,
            resume=resume, model=model_description(objective), extra=extra,
        )  # fmt: skip
        done, ts, saved_history = ckpts.restore(ts, key)
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
    history["steps_per_call"] = "epoch" if engine.chunk is None else engine.chunk

    start = time.perf_counter() - (history["wall_time"][-1] if history["wall_time"] else 0.0)
    stop: StopTraining | None = None
    with ProgressBar(epochs - done, progress_enabled(progress)) as bar:
        for epoch in range(done, epochs):
            last_good = ts  # nothing is donated: the state before this epoch stays valid
            t = time.perf_counter()
            ts, sums = engine(ts, x, y, key, epoch)
            train = engine.means(sums)  # waits for the epoch (the sums come last)
            jax.block_until_ready(ts)
            history["epoch_time"].append(time.perf_counter() - t)
            problem = describe_nonfinite(
                epoch + 1, train, *engine.finite(sums),
                steps=(epoch * plan.n_steps + 1, (epoch + 1) * plan.n_steps),
            )  # fmt: skip
            val: dict[str, float] = {}
            if validation is not None and not (problem and on_nonfinite == "raise"):
                val_metrics = val_fn(ts.params, ts.state, x_val, y_val)
                val = {k: float(v) for k, v in jax.device_get(val_metrics).items()}
            for k, v in train.items():
                history.setdefault(f"train_{k}", []).append(v)
            for k, v in val.items():
                history.setdefault(f"val_{k}", []).append(v)
            history["epoch"].append(epoch + 1)
            history["steps"].append((epoch + 1) * plan.n_steps)
            history["examples_seen"].append((epoch + 1) * plan.examples)
            history["wall_time"].append(time.perf_counter() - start)
            if problem is not None:
                if on_nonfinite == "raise":
                    raise _nonfinite_error(
                        problem, epoch, plan.n_steps, history, last_good, ckpts is not None
                    )
                warnings.warn(f"fit: non-finite values in {problem}", NonFiniteWarning,
                              stacklevel=2)  # fmt: skip
            for hook, wants_history in zip(hooks, with_history, strict=True):
                if wants_history:
                    signal = hook(epoch + 1, ts.params, ts.state, history=history)
                else:
                    signal = hook(epoch + 1, ts.params, ts.state)
                if isinstance(signal, StopTraining) and stop is None:
                    stop = signal
            if stop is not None:
                history["stopped"] = stop.reason
            if ckpts is not None and (ckpts.due(epoch + 1) or stop is not None):
                reason = None if stop is None else stop.reason
                ckpts.save(epoch + 1, ts, key, history, finite=problem is None, stopped=reason)
            bar.update(_postfix(train, val))
            if stop is not None:
                break
    params, state = ts.params, ts.state
    if stop is not None and stop.params is not None:
        params = stop.params
        state = state if stop.state is None else stop.state
    return FitResult(params, state, ts.opt_state, history)


def _nonfinite_error(
    problem: str,
    epoch: int,
    n_steps: int,
    history: dict[str, Any],
    last_good: TrainState,
    checkpointing: bool,
) -> NonFiniteError:
    before = {k: (v[:-1] if isinstance(v, list) else v) for k, v in history.items()}
    kept = (
        " The checkpoint directory keeps the last finite epoch's checkpoint."
        if checkpointing
        else ""
    )
    return NonFiniteError(
        f"fit: training diverged: non-finite values in {problem}.{kept} Lower the learning "
        "rate, check the inputs' scale (standardise them) or the loss, or pass "
        "on_nonfinite='warn' to train on. The error's .result holds the params after "
        f"epoch {epoch} (the last finite one) and .history the metrics so far.",
        epoch=epoch + 1,
        steps=(epoch * n_steps + 1, (epoch + 1) * n_steps),
        history=history,
        result=FitResult(last_good.params, last_good.state, last_good.opt_state, before),
    )
