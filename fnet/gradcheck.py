"""Gradient checks: compare JAX's analytic derivatives with centred finite differences.

"In practice: always use the analytic gradient, but check it against the numerical
one." :func:`check_grad` checks ``jax.grad`` of a scalar function of any pytree (a whole
model's params and a loss, or the inputs) in one call; :func:`check_jacobian` checks a
vector-valued function's full Jacobian the slides' way: columns by finite differences of
the forward pass, rows by the backward pass (VJPs) fed unit vectors.

Each checked coordinate ``i`` of the float64 leaves is perturbed by the slides' step
``h_i = step_scale * max(|x_i|, 1)`` with ``step_scale = eps^(1/3)`` by default
(``SLIDES_STEP_SCALE = sqrt(eps)`` is the slides' value), all perturbations inside one
``jax.jit``. Derivatives below ``floor * max(|f(x)|, 1) / max(|x_i|, 1)`` are compared
absolutely, and a report whose floor hides the derivatives it checks reads LOST
RESOLUTION. The error model behind these defaults is in ``docs/gradcheck.md``.

Float64 must be enabled: ``jax.config.update("jax_enable_x64", True)`` at program start,
or locally ``with jax.enable_x64(True): ...`` (JAX >= 0.8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import keystr, tree_flatten_with_path, tree_unflatten

from fnet._checks import check_int
from fnet.errors import ShapeError

__all__ = [
    "DEFAULT_STEP_SCALE",
    "MAX_RESOLUTION",
    "SLIDES_STEP_SCALE",
    "GradCheckReport",
    "LeafCheck",
    "check_grad",
    "check_jacobian",
    "relative_error",
]

_EPS64 = float(np.finfo(np.float64).eps)
DEFAULT_STEP_SCALE: float = _EPS64 ** (1.0 / 3.0)
"""``eps^(1/3) ~ 6.06e-6``: the error-minimising scale for centred differences."""
SLIDES_STEP_SCALE: float = _EPS64**0.5
"""``sqrt(eps) ~ 1.49e-8``: the slides' literal step scale (dominated by rounding)."""
MAX_RESOLUTION: float = 1e-2
"""A check whose largest derivative could be off by more than this (relative) and still
pass, because it lies below the floor, reports lost resolution instead of passing."""
_ELEMS_PER_CHUNK = 2**21  # perturbed copies of x per vmap chunk: B * size(x) <= this
_MAX_BATCH = 64  # larger chunks run slower on CPU (cache) and compile no faster


def relative_error(analytic, numeric, floor=0.0) -> np.ndarray:
    """Entrywise ``|a - n| / max(|a|, |n|, floor)`` (and 0 where all three are 0).

    Args:
      analytic, numeric: arrays of the same shape.
      floor: a non-negative scalar or array broadcastable to them. Where both values are
        below it they count as "zero": the result is the absolute error measured in units
        of ``floor``, so two such values pass a tolerance ``rtol`` iff
        ``|a - n| <= rtol * floor``.

    Returns:
      ``np.ndarray`` of float64, the shape of the inputs; NaN where either input is NaN.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    diff = np.abs(a - n)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), np.asarray(floor, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, diff / np.where(denom > 0, denom, 1.0), diff)


class LeafCheck(NamedTuple):
    """The result of checking one floating leaf of ``x``.

    Attributes:
      path: the leaf's ``/``-joined key path, e.g. ``"dense_0/w"`` (``"x"`` for a bare
        array).
      shape: the leaf's shape.
      n_checked: how many derivative entries were compared for this leaf.
      max_rel_error: the largest relative error among them (NaN if any value is NaN).
      worst_index: where it occurs: an index into the leaf for :func:`check_grad`; for
        :func:`check_jacobian` the output index followed by the index into the leaf.
      analytic: the analytic derivative at ``worst_index``.
      numeric: the finite-difference derivative at ``worst_index``.
    """

    path: str
    shape: tuple[int, ...]
    n_checked: int
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """What :func:`check_grad` / :func:`check_jacobian` found. ``str(report)`` is a table.

    Attributes:
      leaves: ``{path: LeafCheck}`` for every floating leaf of ``x``, in pytree order.
      max_rel_error: the largest relative error over all leaves.
      n_checked: the number of derivative entries compared (coordinates for a gradient,
        output x coordinate pairs for a Jacobian).
      passed: ``max_rel_error <= rtol`` (False if any value is NaN) AND ``resolved``.
      resolution: the largest relative error in the LARGEST analytic derivative that
        could still pass: ``rtol * floor_i / |a_i|`` if that derivative falls below its
        floor (compared absolutely), else ``rtol``. ``0`` if every derivative is 0.
      resolved: ``resolution <= MAX_RESOLUTION`` (1e-2). False when ``|f(x)|`` is so large
        that the floor ``floor * |f(x)|`` hides the whole gradient, e.g.
        ``f = 1e8 + g(x)``: the floor 1e5 is above every derivative of ``g``, a 5% error
        in them would pass, and the report says "LOST RESOLUTION" instead of PASSED.
      rtol: the tolerance used.
      floor: the floor coefficient used (see :func:`check_grad`).
      step_scale: ``h_i = step_scale * max(|x_i|, 1)``.
      kind: ``"gradient"`` or ``"jacobian"``.
    """

    leaves: Mapping[str, LeafCheck]
    max_rel_error: float
    n_checked: int
    passed: bool
    rtol: float
    floor: float
    step_scale: float
    kind: str = "gradient"
    resolution: float = 0.0
    resolved: bool = True

    @property
    def errors(self) -> dict[str, float]:
        """``{path: max relative error}`` per leaf."""
        return {p: c.max_rel_error for p, c in self.leaves.items()}

    @property
    def failed(self) -> list[str]:
        """Paths of the leaves whose max relative error exceeds ``rtol`` (or is NaN)."""
        return [p for p, c in self.leaves.items() if not c.max_rel_error <= self.rtol]

    def table(self) -> str:
        """One line per leaf: path, shape, entries checked, max rel error, worst entry."""
        head = ("leaf", "shape", "checked", "max rel err", "worst at", "analytic", "numeric")
        rows = [
            (
                p + ("  <-- FAIL" if not c.max_rel_error <= self.rtol else ""),
                str(c.shape),
                str(c.n_checked),
                f"{c.max_rel_error:.2e}",
                str(c.worst_index),
                f"{c.analytic:+.6e}",
                f"{c.numeric:+.6e}",
            )
            for p, c in self.leaves.items()
        ]
        widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]
        )

    def __str__(self) -> str:
        if self.failed:
            verdict = f"FAILED ({', '.join(self.failed)})"
        elif not self.resolved:
            verdict = (
                f"LOST RESOLUTION (the floor {self.floor:g} * |f(x)| exceeds the largest "
                f"derivative: relative errors up to {self.resolution:.1e} in it would pass; "
                "subtract the constant part of f, or pass a smaller floor)"
            )
        else:
            verdict = "PASSED"
        return (
            f"{self.kind} check {verdict}: max relative error {self.max_rel_error:.2e} "
            f"(tolerance {self.rtol:.0e}) over {self.n_checked} entries, "
            f"step h_i = {self.step_scale:.2e} * max(|x_i|, 1)\n{self.table()}"
        )


# --------------------------------------------------------------------------- internals


def _require_x64(fn: str) -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            f"fnet.gradcheck.{fn} compares derivatives in float64, but 64-bit types are "
            "disabled in JAX. Enable them at program start with "
            'jax.config.update("jax_enable_x64", True) (or JAX_ENABLE_X64=1 in the '
            "environment), or around this call only: `with jax.enable_x64(True): ...`."
        )


class _Flat(NamedTuple):
    theta: jax.Array  # (P,) float64: every floating leaf, raveled
    rebuild: Callable[[jax.Array], Any]  # theta -> pytree like x (float leaves float64)
    paths: list[str]
    shapes: list[tuple[int, ...]]
    offsets: list[int]  # start of each floating leaf in theta


def _flatten(x: Any) -> _Flat:
    flat, treedef = tree_flatten_with_path(x)
    leaves = [jnp.asarray(v) for _, v in flat]
    float_pos = [k for k, v in enumerate(leaves) if jnp.issubdtype(v.dtype, jnp.floating)]
    if not float_pos:
        raise TypeError("gradcheck: x has no floating-point leaves to differentiate.")
    for k, v in enumerate(leaves):
        if jnp.issubdtype(v.dtype, jnp.complexfloating):
            name = keystr(flat[k][0], simple=True, separator="/") or "x"
            raise TypeError(f"gradcheck: complex leaf '{name}' is not supported.")
    floats = [leaves[k].astype(jnp.float64) for k in float_pos]
    theta, unravel = ravel_pytree(floats)
    if theta.size == 0:
        raise ValueError("gradcheck: x's floating leaves are all empty; nothing to check.")
    if theta.dtype != jnp.float64:  # pragma: no cover - guarded by _require_x64
        raise RuntimeError("gradcheck: could not cast x to float64; enable jax_enable_x64.")

    def rebuild(t: jax.Array) -> Any:
        new = list(leaves)
        for k, v in zip(float_pos, unravel(t), strict=True):
            new[k] = v
        return tree_unflatten(treedef, new)

    paths = [keystr(flat[k][0], simple=True, separator="/") or "x" for k in float_pos]
    sizes = [int(v.size) for v in floats]
    offsets = [int(o) for o in np.cumsum([0, *sizes[:-1]])]
    return _Flat(theta, rebuild, paths, [tuple(v.shape) for v in floats], offsets)


def _coordinates(flat: _Flat, max_coords_per_leaf: int | None, key) -> list[np.ndarray]:
    """Per leaf, the (sorted) local indices to check: all, or a random subset.

    The subset is drawn on the host by NumPy, seeded by the key's bits and the leaf's
    position (no compiled JAX computation just to pick indices)."""
    max_coords_per_leaf = check_int(
        max_coords_per_leaf, "max_coords_per_leaf", minimum=1, none_ok=True
    )
    if key is None:
        seed = [0]
    else:
        key = jnp.asarray(key)
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        seed = [int(v) for v in np.asarray(key).ravel()]
    out = []
    for k, shape in enumerate(flat.shapes):
        n = int(np.prod(shape, dtype=np.int64))
        if max_coords_per_leaf is None or n <= max_coords_per_leaf:
            out.append(np.arange(n))
        else:
            rng = np.random.default_rng([*seed, k])
            out.append(np.sort(rng.choice(n, max_coords_per_leaf, replace=False)))
    return out


def _default_batch(p: int, batch_size: int | None) -> int:
    if batch_size is not None:
        return check_int(batch_size, "batch_size", minimum=1)
    return max(1, min(_MAX_BATCH, _ELEMS_PER_CHUNK // max(p, 1)))


def _centred_differences(
    g: Callable[[jax.Array], jax.Array],
    theta: jax.Array,
    idx: jax.Array,
    step_scale: float,
    batch_size: int,
) -> jax.Array:
    """Centred differences of ``g: (P,) -> (M,)`` along coordinates ``idx``: ``(K, M)``."""

    def column(i: jax.Array) -> jax.Array:
        xi = theta[i]
        h = step_scale * jnp.maximum(jnp.abs(xi), 1.0)
        xp, xm = xi + h, xi - h
        return (g(theta.at[i].set(xp)) - g(theta.at[i].set(xm))) / (xp - xm)

    return jax.lax.map(column, idx, batch_size=batch_size)


def _floors(floor: float, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(M, K)`` absolute floors ``floor * max(|f_o(x)|, 1) / max(|x_i|, 1)``."""
    return floor * np.maximum(np.abs(values), 1.0)[:, None] / np.maximum(np.abs(x), 1.0)[None, :]


def _check_output(out: Any, fn: str) -> None:
    for leaf in jax.tree.leaves(out):
        if leaf.dtype != jnp.float64:
            raise TypeError(
                f"gradcheck.{fn}: f returned {leaf.dtype} for float64 inputs; the check "
                "needs f to compute in float64 throughout (look for .astype(jnp.float32) "
                "or float32 constants inside f)."
            )


def _resolution(analytic: np.ndarray, floors: np.ndarray, rtol: float) -> float:
    """The relative error the check tolerates in its largest analytic derivative."""
    mags = np.abs(analytic)
    if mags.size == 0 or not np.any(mags > 0) or not np.all(np.isfinite(mags)):
        return 0.0
    o, c = np.unravel_index(int(np.argmax(mags)), mags.shape)
    biggest, floor_i = float(mags[o, c]), float(floors[o, c])
    return rtol if biggest >= floor_i else rtol * floor_i / biggest


def _report(
    flat: _Flat,
    local: list[np.ndarray],
    analytic: np.ndarray,
    numeric: np.ndarray,
    out_shape: tuple[int, ...] | None,
    *,
    floors: np.ndarray,
    rtol: float,
    floor: float,
    step_scale: float,
    kind: str,
) -> GradCheckReport:
    """Build the report from ``(M, K)`` analytic, numeric and floor blocks (``M = 1`` for
    a gradient)."""
    leaves: dict[str, LeafCheck] = {}
    start = 0
    worst_all = 0.0
    for path, shape, idx in zip(flat.paths, flat.shapes, local, strict=True):
        stop = start + idx.size
        a, n = analytic[:, start:stop], numeric[:, start:stop]
        rel = relative_error(a, n, floors[:, start:stop])
        flat_worst = int(np.argmax(np.where(np.isnan(rel), np.inf, rel)))
        o, c = np.unravel_index(flat_worst, rel.shape)
        where = tuple(int(v) for v in np.unravel_index(int(idx[c]), shape))
        if out_shape is not None:
            where = tuple(int(v) for v in np.unravel_index(int(o), out_shape)) + where
        err = float(rel[o, c])
        leaves[path] = LeafCheck(
            path, shape, int(rel.size), err, where, float(a[o, c]), float(n[o, c])
        )
        worst_all = float("nan") if np.isnan(err) or np.isnan(worst_all) else max(worst_all, err)
        start = stop
    resolution = _resolution(analytic, floors, rtol)
    resolved = bool(resolution <= MAX_RESOLUTION)
    return GradCheckReport(
        leaves=leaves,
        max_rel_error=worst_all,
        n_checked=int(sum(c.n_checked for c in leaves.values())),
        passed=bool(worst_all <= rtol) and resolved,
        resolution=resolution,
        resolved=resolved,
        rtol=rtol,
        floor=floor,
        step_scale=step_scale,
        kind=kind,
    )


# --------------------------------------------------------------------------- public API


def check_grad(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    rtol: float = 1e-6,
    step_scale: float = DEFAULT_STEP_SCALE,
    floor: float = 1e-3,
    max_coords_per_leaf: int | None = None,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> GradCheckReport:
    """Check ``jax.grad(f)(x)`` against centred finite differences, leaf by leaf.

    Example::

        loss = lambda p: fnet.losses.softmax_cross_entropy(model.apply(p, xb), yb)
        report = fnet.gradcheck.check_grad(loss, params)
        assert report.passed, report

    Args:
      f: a scalar function of a pytree, traceable by ``jax.jit`` and ``jax.vmap``.
      x: the point to check at: any pytree (e.g. a model's params). Floating leaves are
        cast to float64 and checked; other leaves are passed through unchanged.
      rtol: pass if the max relative error (see :func:`relative_error`) is ``<= rtol``.
      step_scale: ``h_i = step_scale * max(|x_i|, 1)``; the default ``eps^(1/3)`` and
        the error model are explained in the module docstring.
      floor: relative floor: derivatives below
        ``floor * max(|f(x)|, 1) / max(|x_i|, 1)`` count as zero and are compared
        absolutely (see the module docstring); ``0`` gives the plain relative error.
      max_coords_per_leaf: check at most this many coordinates of each leaf, a random
        subset drawn with ``key`` (default: all coordinates).
      key: a JAX PRNG key seeding the subset (default: a fixed seed, so reproducible).
      batch_size: coordinates evaluated together in one ``vmap`` (default: 64, fewer
        if ``batch_size * size(x)`` would exceed 2M elements).

    Returns:
      A :class:`GradCheckReport` (``.passed``, ``.max_rel_error``, ``.errors`` per path,
      ``.failed``, ``.n_checked``; ``print(report)`` shows a table).

    Raises:
      RuntimeError: float64 is not enabled in JAX (the message says how to enable it).
      ShapeError: ``f`` does not return a scalar.
      TypeError: ``x`` has no floating leaves, or ``f`` does not return float64;
        ``max_coords_per_leaf`` or ``batch_size`` is not ``None`` or an int.
      ValueError: ``max_coords_per_leaf`` or ``batch_size`` is below 1.
    """
    _require_x64("check_grad")
    flat = _flatten(x)

    def g(theta: jax.Array) -> jax.Array:
        return f(flat.rebuild(theta))

    out = jax.eval_shape(g, flat.theta)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ShapeError(
            f"gradcheck.check_grad: f must return a scalar, got {shape}. Reduce it "
            "(e.g. reduction='mean'), or use check_jacobian for vector-valued functions."
        )
    _check_output(out, "check_grad")
    local = _coordinates(flat, max_coords_per_leaf, key)
    coords = np.concatenate([o + i for o, i in zip(flat.offsets, local, strict=True)])
    b = _default_batch(flat.theta.shape[0], batch_size)

    @jax.jit
    def run(theta: jax.Array, idx: jax.Array) -> tuple[jax.Array, ...]:
        value, grad = jax.value_and_grad(g)(theta)
        numeric = _centred_differences(lambda t: g(t)[None], theta, idx, step_scale, b)
        return value, grad[idx], numeric[:, 0]

    value, analytic, numeric = map(np.asarray, run(flat.theta, jnp.asarray(coords)))
    return _report(
        flat,
        local,
        analytic[None, :],
        numeric[None, :],
        None,
        floors=_floors(floor, np.asarray(value)[None], np.asarray(flat.theta)[coords]),
        rtol=rtol,
        floor=floor,
        step_scale=step_scale,
        kind="gradient",
    )


def check_jacobian(
    f: Callable[[Any], Any],
    x: Any,
    *,
    rtol: float = 1e-6,
    step_scale: float = DEFAULT_STEP_SCALE,
    floor: float = 1e-3,
    max_coords_per_leaf: int | None = None,
    key: jax.Array | None = None,
    batch_size: int | None = None,
) -> GradCheckReport:
    """Check the Jacobian of a vector-valued ``f`` the slides' way, entry by entry.

    Columns ``dF/dx_i`` come from centred finite differences of the forward pass; rows
    ``dF_o/dx`` from the backward pass, a VJP fed the unit vector ``e_o`` (``jax.vmap``
    over all unit vectors). The two ``(outputs, inputs)`` matrices are compared entrywise.
    Cost: ``2 * size(x)`` forward and ``size(f(x))`` backward passes, so keep it small.

    Args:
      f: ``f(x) -> y``; ``x`` and ``y`` arrays (or pytrees of arrays); traceable by
        ``jax.jit`` and ``jax.vmap``.
      x: the point to check at (float leaves cast to float64). Use a small random input.
      rtol, step_scale, floor, max_coords_per_leaf, key, batch_size: as in
        :func:`check_grad` (``max_coords_per_leaf`` subsets the input coordinates).

    Returns:
      A :class:`GradCheckReport` with ``kind="jacobian"``; a leaf's ``worst_index`` is
      the output index (into ``f(x)``'s shape, or its raveled index for a pytree output)
      followed by the index into that input leaf.

    Raises:
      RuntimeError: float64 is not enabled in JAX.
      TypeError: ``x`` has no floating leaves, or ``f`` does not return float64;
        ``max_coords_per_leaf`` or ``batch_size`` is not ``None`` or an int.
      ValueError: ``max_coords_per_leaf`` or ``batch_size`` is below 1.
    """
    _require_x64("check_jacobian")
    flat = _flatten(x)
    out = jax.eval_shape(lambda t: f(flat.rebuild(t)), flat.theta)
    _check_output(out, "check_jacobian")
    single = isinstance(out, jax.ShapeDtypeStruct)
    out_shape = tuple(out.shape) if single else (sum(o.size for o in jax.tree.leaves(out)),)

    def g(theta: jax.Array) -> jax.Array:
        return ravel_pytree(f(flat.rebuild(theta)))[0]

    m = int(np.prod(out_shape, dtype=np.int64))
    b = _default_batch(flat.theta.shape[0], batch_size)
    local = _coordinates(flat, max_coords_per_leaf, key)
    coords = np.concatenate([o + i for o, i in zip(flat.offsets, local, strict=True)])

    @jax.jit
    def run(theta: jax.Array, idx: jax.Array) -> tuple[jax.Array, ...]:
        value, vjp = jax.vjp(g, theta)
        rows = jax.lax.map(lambda e: vjp(e)[0][idx], jnp.eye(m, dtype=jnp.float64), batch_size=b)
        return value, rows, _centred_differences(g, theta, idx, step_scale, b).T

    value, analytic, numeric = map(np.asarray, run(flat.theta, jnp.asarray(coords)))
    return _report(
        flat,
        local,
        analytic,
        numeric,
        out_shape,
        floors=_floors(floor, np.asarray(value), np.asarray(flat.theta)[coords]),
        rtol=rtol,
        floor=floor,
        step_scale=step_scale,
        kind="jacobian",
    )
