"""The training engine: how an epoch is compiled and run (what ``fit`` calls once per epoch).

An epoch of ``fit`` is a fixed sequence of optimizer steps: epoch ``e`` splits
``fold_in(key, e)`` into ``n_steps + 1`` keys, shuffles the ``N`` examples with the first
(:func:`jax.random.permutation`), and step ``i`` (0-based) trains on rows
``order[i*B:(i+1)*B]`` with key ``i + 1``; a smaller last batch follows the full ones
(:class:`~fnet.train.epoch.BatchPlan`). The *driver* decides how many of those steps one
compiled call runs (``steps_per_call``):

- ``"epoch"``: the whole epoch is one call, a rolled ``lax.scan`` over the full batches
  (a ``while`` loop in XLA) plus the last batch. One compile whatever the epoch's length.
- an int ``K``: a small call computes the epoch's keys and permutation, then a Python
  loop calls a compiled chunk of ``K`` *fully unrolled* steps (straight-line code, no
  ``while``), and one last call runs the ``n_steps % K`` remaining steps and the last
  batch. For steps XLA:CPU runs slowly inside a loop: convolutions that are not in its
  canonical form (:func:`loop_slow_ops`; every fnet ``Conv2D`` is canonical).
- ``"auto"`` (default): ``K = AUTO_CHUNK`` (one step per call) when the backend is CPU
  and the step has such a convolution, else ``"epoch"`` (:func:`resolve_steps_per_call`;
  the rule and its measurements are in ``docs/design.md``).

Every driver runs the same steps on the same batches with the same keys in the same
order and accumulates the metrics in the same order, and every driver gives the same
bits (tested for dense, convolutional and BatchNorm + Dropout models with adam and SGD
with momentum, on CPU). Two things make that hold where XLA would otherwise compile a
step differently in different programs: fnet's convolutions are canonical, so XLA:CPU
compiles them alike inside a loop and outside it (:mod:`fnet.layers.conv`), and an
unrolled chunk outputs the state between its steps, so no step's state is fused into
the next step's kernels (:func:`_run_steps`).

Compiled code is cached by the static configuration (objective, optimizer, batch plan,
driver, mesh) and the shapes, dtypes and shardings of the arguments, so a second ``fit``
with the same objective, optimizer, batch size and data shapes traces, lowers and
compiles nothing. The train state is not donated: the caller's arrays stay valid and are
never copied (inside a scanned epoch XLA updates the carry in place; between calls one
new state is allocated).

A chunk reads its batches by gathering rows of the on-device ``x``/``y`` with the
permutation; feeding batches from a host iterator later means a chunk variant that takes
``(K, B, ...)`` stacked batches instead of ``(x, y, order)``: the step body
(:func:`_run_steps`) is written against a ``batch(i)`` function for that reason.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from fnet import _xla, distributed
from fnet._checks import check_int
from fnet.train.epoch import BatchPlan
from fnet.train.objective import Metrics, Objective
from fnet.train.step import TrainState, make_step, sharded_objective
from fnet.tree import abstract_args, abstract_signature

__all__ = [
    "AUTO_CHUNK",
    "FINITE_KEYS",
    "EpochEngine",
    "StepsPerCall",
    "compiled",
    "loop_slow_ops",
    "resolve_steps_per_call",
]

StepsPerCall: TypeAlias = int | Literal["auto", "epoch"]

AUTO_CHUNK = 1
"""Steps per compiled call chosen by ``"auto"`` for steps with loop-slow ops on CPU.

One step per call: a convolution step takes milliseconds on CPU, so a call's dispatch
(~0.1 ms) costs little, and one step compiles fastest (compile time grows linearly with
the steps unrolled into a call). Two unrolled steps per call measured at most 1.1-1.2x
one step per call on a loaded 2-core CPU (docs/performance.md)."""


# --------------------------------------------------------------------------- the steps


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything static about a compiled epoch (hashable: it keys the caches)."""

    objective: Any
    optimizer: Any
    plan: BatchPlan
    mesh: Mesh | None


def _gather(a: jax.Array, idx: jax.Array) -> jax.Array:
    """Rows ``a[idx]``; ``idx`` is a slice of a permutation: in bounds and unique."""
    return a.at[idx].get(mode="promise_in_bounds", unique_indices=True)


def _as_float(v: jax.Array) -> jax.Array:
    v = jnp.asarray(v)
    return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.float32)


def _summed_step(spec: _Spec) -> Callable[..., tuple[TrainState, Metrics]]:
    """The train step that adds ``b * metric`` into the running sums (``b``: batch size).

    ``"objective"`` is left out when it is the very ``"loss"`` metric (same traced value):
    the host then reports one as the other, with no second accumulator in the carry.
    """
    objective = spec.objective
    if spec.mesh is not None:
        objective = sharded_objective(objective, spec.mesh)
    step = make_step(objective, spec.optimizer, dedupe_objective=True)

    def summed(ts: TrainState, sums: Metrics, xb, yb, key) -> tuple[TrainState, Metrics]:
        ts, metrics = step(ts, xb, yb, key)
        b = xb.shape[0]
        return ts, {k: sums[k] + _as_float(v) * b for k, v in metrics.items()}

    return summed


def _epoch_order(spec: _Spec, n: int, key: jax.Array, epoch: jax.Array):
    """The epoch's step keys ``(n_steps + 1,)`` and example order ``(n,)`` (or None)."""
    keys = jax.random.split(jax.random.fold_in(key, epoch), spec.plan.n_steps + 1)
    if spec.plan.full_batch:
        return keys, None  # one batch of everything: the order does not matter
    return keys, jax.random.permutation(keys[0], n)


def _run_steps(summed, ts, sums, batch, keys, first: int | jax.Array, count: int, unroll: bool):
    """Steps ``first .. first + count - 1``: ``batch(i) -> (xb, yb)``, key ``keys[i + 1]``.

    Returns ``(ts, sums, kept)``: ``kept`` lists the carries between unrolled steps (the
    state after each step but the last), which the chunk returns as outputs. An output is
    written to memory once, as the state a rolled loop carries or a one-step call returns
    is; without it XLA may fuse (recompute) the cheap elementwise ops that make one step's
    state (an optimizer's moments, say) into the next step's kernels, and since XLA:CPU
    always contracts ``a * b + c`` into a fused multiply-add inside a kernel, that rounds
    differently (BatchNorm + adam steps differed in the 7th digit). ``lax.optimization_barrier``
    between the steps does not prevent it (XLA:CPU expands barriers before fusion), so
    none is used.
    """
    kept: list[Any] = []
    if count == 0:
        return ts, sums, kept

    def body(carry, i):
        ts, sums = carry
        xb, yb = batch(i)
        return summed(ts, sums, xb, yb, keys[i + 1]), None

    if unroll:  # straight-line code: no while loop, not even for one step
        carry = (ts, sums)
        for j in range(count):
            if j:
                kept.append(carry)
            carry, _ = body(carry, jnp.asarray(first, jnp.int32) + j)
        return (*carry, kept)
    steps = first + jnp.arange(count, dtype=jnp.int32)
    (ts, sums), _ = lax.scan(body, (ts, sums), steps)
    return ts, sums, kept


def _batches(spec: _Spec, x, y, order):
    b = spec.plan.batch_size

    def batch(i):
        if order is None:
            return x, y
        idx = lax.dynamic_slice_in_dim(order, i * b, b)
        return _gather(x, idx), _gather(y, idx)

    return batch


def _last(spec: _Spec, summed, ts, sums, x, y, keys, order):
    """The smaller last batch (the ``tail`` examples after the full batches), if any."""
    plan = spec.plan
    if not plan.tail:
        return ts, sums
    idx = order[plan.steps * plan.batch_size :]
    return summed(ts, sums, _gather(x, idx), _gather(y, idx), keys[plan.n_steps])


FINITE_KEYS = ("_params_finite", "_state_finite")
"""Entries the call that ends an epoch adds to the sums: 1.0 if every float leaf of the
params (the model state) is finite, else 0.0. Computed inside the epoch's compiled code,
so ``fit``'s non-finite guard compiles and dispatches nothing of its own."""


def _all_finite(tree: Any) -> jax.Array:
    """float32 1.0 if every inexact leaf of ``tree`` is finite, else 0.0."""
    flags = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
             if jnp.issubdtype(a.dtype, jnp.inexact)]  # fmt: skip
    return jnp.all(jnp.stack(flags)).astype(jnp.float32) if flags else jnp.float32(1)


def _end_epoch(spec: _Spec, ts, sums):
    """The last call of an epoch: add the finiteness flags, then pin the shardings."""
    flags = dict(zip(FINITE_KEYS, (_all_finite(ts.params), _all_finite(ts.state)), strict=True))
    return _pin(spec, ts, {**sums, **flags})


def _pin(spec: _Spec, ts, sums):
    """On a mesh: the outputs keep the inputs' shardings (one compiled program per fit)."""
    if spec.mesh is None:
        return ts, sums
    ts = jax.lax.with_sharding_constraint(ts, distributed.param_shardings(ts, spec.mesh))
    return ts, jax.lax.with_sharding_constraint(sums, distributed.replicated(spec.mesh))


@functools.partial(jax.jit, static_argnames=("spec",))
def _whole_epoch(ts, sums, x, y, key, epoch, *, spec: _Spec):
    """One call = one epoch: a rolled scan over the full batches, then the last batch."""
    summed = _summed_step(spec)
    keys, order = _epoch_order(spec, x.shape[0], key, epoch)
    batch = _batches(spec, x, y, order)
    ts, sums, _ = _run_steps(summed, ts, sums, batch, keys, 0, spec.plan.steps, unroll=False)
    return _end_epoch(spec, *_last(spec, summed, ts, sums, x, y, keys, order))


@functools.partial(jax.jit, static_argnames=("spec", "n"))
def _start_epoch(key, epoch, *, spec: _Spec, n: int):
    """The chunked driver's first call: the epoch's keys and order."""
    keys, order = _epoch_order(spec, n, key, epoch)
    out = keys, (jnp.zeros((0,), jnp.int32) if order is None else order)
    if spec.mesh is not None:
        out = jax.lax.with_sharding_constraint(out, distributed.replicated(spec.mesh))
    return out


@functools.partial(jax.jit, static_argnames=("spec", "count", "last", "end"))
def _chunk(ts, sums, x, y, keys, order, first, *, spec: _Spec, count: int, last: bool, end: bool):
    """``count`` unrolled steps from step ``first``, then the last batch if ``last``;
    ``end``: this call ends the epoch (it adds the finiteness flags).

    Returns ``(ts, sums, kept)``; ``kept`` (the states between the call's steps, see
    :func:`_run_steps`) is dropped by the caller: it costs ``K - 1`` (``K`` with the
    last batch) copies of the train state while the call runs."""
    summed = _summed_step(spec)
    order = None if spec.plan.full_batch else order
    batch = _batches(spec, x, y, order)
    ts, sums, kept = _run_steps(summed, ts, sums, batch, keys, first, count, unroll=True)
    if last:
        if count:
            kept.append((ts, sums))
        ts, sums = _last(spec, summed, ts, sums, x, y, keys, order)
    ts, sums = _end_epoch(spec, ts, sums) if end else _pin(spec, ts, sums)
    return ts, sums, kept


# --------------------------------------------------------------------------- the driver rule


def _canonical_conv(params: dict[str, Any]) -> bool:
    """Whether XLA:CPU runs this convolution as it is: input ``N..C``, kernel ``..IO``,
    output ``N..C`` (its ``PotentiallyImplementedAsEigenConvolution``), no reversal."""
    dn = params.get("dimension_numbers")
    if dn is None:  # lax's default NC.., OI..: not canonical
        return False
    lhs, rhs, out = (tuple(int(d) for d in spec) for spec in dn)
    n = len(lhs)
    feature_last = (0, n - 1, *range(1, n - 1))
    return lhs == out == feature_last and rhs == (n - 1, n - 2, *range(n - 2))


def loop_slow_ops(jaxpr: Any) -> frozenset[str]:
    """The operations of ``jaxpr`` that XLA:CPU runs much slower inside a ``while`` loop.

    These are convolutions that are not in XLA:CPU's canonical form (input ``N..C``,
    kernel ``..IO``, output ``N..C``): XLA:CPU transposes them into that form only in the
    entry computation, so inside ``lax.scan`` they fall back to a naive loop nest (~10x
    slower for the slides' convnet, measured; ``docs/performance.md``). JAX's own
    gradients of an NHWC convolution are such convolutions; :func:`fnet.layers.conv_nhwc`
    (every fnet ``Conv2D``) writes canonical ones. Returns descriptions such as
    ``"conv_general_dilated (3, 0, 1, 2)/(0, 3, 1, 2)->(2, 3, 0, 1)"``, empty if none.
    """
    slow = set()
    for eqn in _xla.eqns(jaxpr):
        if eqn.primitive.name == "conv_general_dilated" and not _canonical_conv(eqn.params):
            dn = eqn.params.get("dimension_numbers")
            specs = "default" if dn is None else "{}/{}->{}".format(*map(tuple, dn))
            slow.add(f"conv_general_dilated {specs}")
    return frozenset(slow)


@functools.lru_cache(maxsize=64)
def _step_info(spec: _Spec, sig: Any) -> tuple[frozenset[str], tuple[tuple[str, Any], ...]]:
    """One abstract trace of the step: its loop-slow ops and its metrics' names and dtypes."""
    ts, x, y = abstract_args(sig)
    step = make_step(spec.objective, spec.optimizer, dedupe_objective=True)
    b = spec.plan.batch_size
    xb = jax.ShapeDtypeStruct((b, *x.shape[1:]), x.dtype)
    yb = jax.ShapeDtypeStruct((b, *y.shape[1:]), y.dtype)
    jaxpr, (_, metrics) = jax.make_jaxpr(step, return_shape=True)(ts, xb, yb, jax.random.key(0))
    dtypes = tuple((k, _as_float(jnp.zeros((), v.dtype)).dtype) for k, v in metrics.items())
    return loop_slow_ops(jaxpr.jaxpr), dtypes


def _check_steps_per_call(steps_per_call: Any) -> None:
    if isinstance(steps_per_call, str):
        if steps_per_call not in ("auto", "epoch"):
            raise ValueError(
                "fit: steps_per_call must be 'auto', 'epoch' or an int >= 1, got "
                f"{steps_per_call!r}"
            )
        return
    check_int(steps_per_call, "fit: steps_per_call (if not 'auto' or 'epoch')", minimum=1)


def resolve_steps_per_call(
    steps_per_call: StepsPerCall, loop_slow: frozenset[str], backend: str, n_steps: int
) -> int | None:
    """The driver for one epoch of ``n_steps`` steps: ``None`` (whole epoch) or ``K``.

    ``"auto"``: ``AUTO_CHUNK`` steps per call when ``backend == "cpu"`` and the step has
    operations XLA:CPU runs slowly inside a loop (``loop_slow``, from
    :func:`loop_slow_ops`: non-canonical convolutions), else the whole epoch. An int
    ``K`` is clipped to ``n_steps`` (``K >= n_steps`` is one unrolled call per epoch).

    Raises:
      TypeError: ``steps_per_call`` is neither a string nor an int (``True``, ``2.5``).
      ValueError: ``steps_per_call`` is a string other than ``"auto"``/``"epoch"``, or
        an int below 1.
    """
    _check_steps_per_call(steps_per_call)
    if steps_per_call == "epoch":
        return None
    if steps_per_call == "auto":
        if backend != "cpu" or not loop_slow:
            return None
        steps_per_call = AUTO_CHUNK
    return max(1, min(int(steps_per_call), n_steps))  # n_steps == 0: one call, last batch


# --------------------------------------------------------------------------- compile cache


@functools.lru_cache(maxsize=256)
def _compiled(fn: Any, static: tuple[tuple[str, Any], ...], sig: tuple[Any, ...]) -> Any:
    """``fn`` traced, lowered and compiled for the abstract arguments ``sig`` (cached),
    with the compiler options :func:`fnet._xla.compiler_options` picks for the program
    (on CPU, convolutions run by XLA's Eigen kernels rather than YNNPACK)."""
    args = abstract_args(sig)
    traced = fn.trace(*args, **dict(static))
    options = _xla.compiler_options(traced.jaxpr, _xla.platform_of(args))
    return traced.lower().compile(compiler_options=options)


@functools.lru_cache(maxsize=64)
def _zeros(dtypes: tuple[tuple[str, Any], ...], mesh: Mesh | None) -> Metrics:
    """The metric sums' initial value (immutable device scalars, shared by every epoch)."""
    zeros = {name: jnp.zeros((), dtype) for name, dtype in dtypes}
    return zeros if mesh is None else distributed.replicate(zeros, mesh)


def compiled(fn: Any, *args: Any, **static: Any) -> Any:
    """The compiled executable of the jitted ``fn`` for ``args`` (static keywords ``static``).

    Cached by ``fn``, the static values (hashed) and the arguments' shapes, dtypes and
    shardings: calling it again with like arguments traces, lowers and compiles nothing.
    (``jax.jit``'s ``lower().compile()`` does not fill the cache that calling the jitted
    function uses, so warming a jitted function that way compiles it twice.)
    """
    return _compiled(fn, tuple(sorted(static.items())), abstract_signature(*args))


# --------------------------------------------------------------------------- the engine


class EpochEngine:
    """Compiled epochs of one ``fit``: ``ts, sums = engine(ts, x, y, key, epoch)``.

    Built per ``fit`` call (cheap); all compiled code comes from process-wide caches keyed
    by the static configuration and the argument shapes, so building it again for the
    same objective, optimizer, batch plan and shapes compiles nothing.

    Args:
      objective: the :class:`~fnet.train.objective.Objective` (static: hashed).
      optimizer: an optax ``GradientTransformation`` (static: hashed).
      plan: the epoch's :class:`~fnet.train.epoch.BatchPlan`.
      steps_per_call: ``"auto"``, ``"epoch"`` or an int ``K >= 1`` (see the module).
      mesh: a ``jax.sharding.Mesh`` (data parallelism) or ``None``. With a mesh the
        arguments must already be placed (``fnet.distributed.place``/``place_data``).
    """

    def __init__(
        self,
        objective: Objective,
        optimizer: optax.GradientTransformation,
        plan: BatchPlan,
        *,
        steps_per_call: StepsPerCall = "auto",
        mesh: Mesh | None = None,
    ) -> None:
        _check_steps_per_call(steps_per_call)
        self.spec = _Spec(
            objective, optimizer, plan, None if mesh is None else distributed.as_auto(mesh)
        )
        self.steps_per_call = steps_per_call
        self._calls: list[tuple[Any, int, bool]] | None = None
        self._whole: Any = None
        self._start: Any = None
        self._zeros: Metrics = {}

    def compile(self, ts: TrainState, x: jax.Array, y: jax.Array, key: jax.Array) -> float:
        """Trace, lower and compile everything an epoch calls (cached); seconds taken.

        Must be called before the first epoch; calling it again with other shapes
        recompiles for those shapes.
        """
        t0 = time.perf_counter()
        spec, plan = self.spec, self.spec.plan
        slow, dtypes = _step_info(spec, abstract_signature(ts, x, y))
        devices = jax.devices() if spec.mesh is None else list(spec.mesh.devices.flat)
        k = resolve_steps_per_call(self.steps_per_call, slow, devices[0].platform, plan.steps)
        self.chunk = k
        zeros = self._zeros = _zeros(dtypes, spec.mesh)
        epoch = np.int32(0)
        if k is None:
            self._whole = _compiled(
                _whole_epoch, (("spec", spec),), abstract_signature(ts, zeros, x, y, key, epoch)
            )
            self._calls = None
        else:
            n = x.shape[0]
            self._start = _compiled(
                _start_epoch, (("spec", spec), ("n", n)), abstract_signature(key, epoch)
            )
            keys, order = jax.eval_shape(
                functools.partial(_start_epoch, spec=spec, n=n), key, epoch
            )
            if spec.mesh is not None:
                rep = distributed.replicated(spec.mesh)
                keys, order = (
                    jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep) for a in (keys, order)
                )
            full, rest = divmod(plan.steps, k)
            calls = [(k, False)] * full
            if rest or plan.tail or not calls:
                calls.append((rest, bool(plan.tail)))
            self._calls = []
            first = 0
            for i, (count, last) in enumerate(calls):
                end = i == len(calls) - 1
                static = (("spec", spec), ("count", count), ("last", last), ("end", end))
                sig = abstract_signature(ts, zeros, x, y, keys, order, np.int32(0))
                self._calls.append((_compiled(_chunk, static, sig), first, last))
                first += count
        return time.perf_counter() - t0

    def __call__(
        self, ts: TrainState, x: jax.Array, y: jax.Array, key: jax.Array, epoch: int
    ) -> tuple[TrainState, Metrics]:
        """Run epoch ``epoch`` (0-based); returns the new state and the metric sums.

        ``sums[name]`` is the example-weighted sum over the epoch's steps (each step's
        metric times its batch size), a device scalar; divide by ``plan.examples``
        (:meth:`means`). ``sums`` also holds the :data:`FINITE_KEYS` flags (:meth:`finite`).
        """
        e = np.int32(epoch)
        if self._calls is None:
            if self._whole is None:
                raise RuntimeError("EpochEngine: call compile(ts, x, y, key) before running epochs")
            return self._whole(ts, self._zeros, x, y, key, e)
        keys, order = self._start(key, e)
        sums = self._zeros
        for fn, first, _ in self._calls:
            ts, sums, _ = fn(ts, sums, x, y, keys, order, np.int32(first))
        return ts, sums

    @staticmethod
    def finite(sums: Metrics) -> tuple[bool, bool]:
        """``(params_finite, state_finite)`` after the epoch whose ``sums`` these are."""
        host = jax.device_get({k: sums[k] for k in FINITE_KEYS})
        return bool(host[FINITE_KEYS[0]] > 0), bool(host[FINITE_KEYS[1]] > 0)

    def means(self, sums: Metrics) -> dict[str, float]:
        """Host floats: each metric's example-weighted mean over the epoch.

        Adds ``"objective"`` equal to ``"loss"`` when the two were the same value.
        """
        host = jax.device_get(sums)
        n = float(self.spec.plan.examples)
        out = {k: float(np.float64(v) / n) for k, v in host.items() if k not in FINITE_KEYS}
        if "objective" not in out and "loss" in out:
            out["objective"] = out["loss"]
        return out
