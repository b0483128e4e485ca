"""Per-example gradients, their norms, and per-example clipping (the DP-SGD update).

``g_i`` is the gradient of example ``i``'s loss ``loss_fn(params, x[i:i+1], y[i:i+1])``
(see :mod:`fnet.per_example.objective`). With a ``reduction="mean"`` loss the batch
gradient is ``mean_i g_i``; with ``"sum"`` it is ``sum_i g_i``. With ``key`` given,
example ``i`` gets its own key ``jax.random.split(key, n)[i]`` (Dropout masks).

Two paths compute norms and sums:

* ``"vmap"``: ``jax.vmap(jax.grad(...))`` over examples, in chunks of ``chunk_size``
  inside one ``lax.scan``, so at most ``chunk_size`` per-example gradients exist at once.
  Works for every model.
* ``"dense"``: the dense-layer trick (:mod:`fnet.per_example.dense_trick`): never forms
  a per-example gradient; one forward and one backward pass per chunk.

``method="auto"`` uses ``"dense"`` when it applies and ``"vmap"`` otherwise.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh

from fnet import distributed
from fnet._checks import check_int
from fnet.chunking import scan_chunks
from fnet.core import Params
from fnet.per_example import dense_trick
from fnet.per_example.chunking import batch_size, example_keys
from fnet.per_example.objective import LossFn, as_loss_fn, call_loss
from fnet.tree import abstract_args, abstract_signature

__all__ = [
    "Method",
    "clip_and_average",
    "clipped_gradient_fn",
    "grads",
    "norms",
    "uses_dense_trick",
]

Method: TypeAlias = Literal["auto", "vmap", "dense"]
METHODS = ("auto", "vmap", "dense")
_VMAP_CHUNK_BYTES = 32 * 2**20  # per-example gradient buffer per chunk on the vmap path
_DENSE_CHUNK = 4096


def _example_grad(loss_fn: LossFn, params: Params, state: Any, x_i, y_i, k_i) -> Params:
    one = lambda a: a[None]

    def loss(p):
        return call_loss(loss_fn, p, jax.tree.map(one, x_i), jax.tree.map(one, y_i), k_i, state)

    return jax.grad(loss)(params)


def _vmap_grads(loss_fn, params, state, x, y, keys) -> Params:
    f = functools.partial(_example_grad, loss_fn, params, state)
    return jax.vmap(f, in_axes=(0, 0, None if keys is None else 0))(x, y, keys)


def _per_example_sq(g: Params) -> jax.Array:
    """``|g_i|^2`` ``(n,)`` of per-example gradients with a leading example axis."""
    return jax.vmap(functools.partial(optax.tree_utils.tree_norm, squared=True))(g)


def _vmap_weighted_sums(loss_fn, params, state, x, y, weights, keys):
    g = _vmap_grads(loss_fn, params, state, x, y, keys)
    sq = _per_example_sq(g)
    g_sum = jax.tree.map(lambda a: jnp.tensordot(weights.astype(a.dtype), a, axes=1), g)
    return g_sum, sq * jnp.square(weights).astype(sq.dtype)


def weighted_sums(
    loss_fn: LossFn, params: Params, state: Any, x, y, weights, keys, method: str
) -> tuple[Params, jax.Array]:
    """``(sum_i w_i g_i, w_i^2 |g_i|^2)`` for one chunk; ``method`` is "dense" or "vmap"."""
    if method == "dense":
        return dense_trick.weighted_sums(loss_fn, params, x, y, weights, keys)
    return _vmap_weighted_sums(loss_fn, params, state, x, y, weights, keys)


def _spec(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), tree)


def dense_trick_applies(loss_fn: LossFn, params: Params, x: Any, y: Any, keys: Any, state: Any):
    """True if the dense trick applies (checked by tracing shapes only, no compute)."""
    if state is not None:
        return False
    n = batch_size(x)
    try:
        jax.eval_shape(
            lambda p, x, y, k: dense_trick.weighted_sums(
                loss_fn, p, x, y, jnp.ones((n,), jnp.float32), k
            ),
            _spec(params),
            _spec(x),
            _spec(y),
            _spec(keys),
        )
    except dense_trick.NotEligible:
        return False
    return True


def uses_dense_trick(
    loss_fn: LossFn, params: Params, x: Any, y: Any, *, key: Any = None, state: Any = None
) -> bool:
    """True if ``method="auto"`` takes the dense-trick path for these arguments.

    ``loss_fn``: an ``Objective`` or a plain loss (:mod:`fnet.per_example.objective`).
    """
    loss_fn = as_loss_fn(loss_fn)
    keys = example_keys(key, batch_size(x))
    return dense_trick_applies(loss_fn, params, x, y, keys, state)


def resolve_method(loss_fn, params, x, y, keys, state, method: str) -> str:
    """``"dense"`` or ``"vmap"``: the path ``method`` takes for these arguments."""
    if method == "vmap":
        return "vmap"
    if dense_trick_applies(loss_fn, params, x, y, keys, state):
        return "dense"
    if method == "dense":
        raise ValueError(
            "method='dense' does not apply: it needs a ModelLoss of a stateless fnet.serial "
            "chain of Dense (rank-2 inputs) and parameter-free layers"
        )
    return "vmap"


@functools.lru_cache(maxsize=256)
def _cached_path(loss_fn, method: str, n: int, signature: tuple) -> str:
    params, x, y, key, state = abstract_args(signature)
    keys = None if key is None else jax.eval_shape(lambda k: jax.random.split(k, n), key)
    return resolve_method(loss_fn, params, x, y, keys, state, method)


def choose_path(loss_fn, params, x, y, key, state, method: str) -> str:
    """Validate ``method`` and resolve it to ``"dense"`` or ``"vmap"`` before compiling, so
    ``"auto"`` and its path share one compiled function. Decided from shapes only and
    memoised per (loss_fn, method, shapes), so repeated calls cost a dictionary look-up."""
    _check_method(method)
    signature = abstract_signature(params, x, y, key, state)
    try:
        return _cached_path(loss_fn, method, batch_size(x), signature)
    except TypeError:  # an unhashable loss_fn: decide without the memo
        return _cached_path.__wrapped__(loss_fn, method, batch_size(x), signature)


def default_chunk(params: Params, method: str, n: int) -> int:
    """A chunk size: ``_DENSE_CHUNK`` for the trick, else ~32 MiB of per-example gradients."""
    if method == "dense":
        return min(n, _DENSE_CHUNK)
    per_example = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params))
    return max(1, min(n, _VMAP_CHUNK_BYTES // max(per_example, 1)))


def stream_sq_norms(
    loss_fn: LossFn,
    params: Params,
    state: Any,
    x: Any,
    y: Any,
    keys: Any,
    method: str,
    chunk_size: int | None,
) -> jax.Array:
    """``|g_i|^2``, shape ``(n,)``, streamed over chunks of ``chunk_size`` examples.

    :func:`fnet.chunking.scan_chunks`: the full chunks run in one ``lax.scan``, sliced
    from the data in place; the last ``n % chunk_size`` examples form one chunk of
    exactly that size. Nothing pads or copies the dataset, so memory stays one chunk's
    work plus the data itself.
    """
    n = batch_size(x)
    method = resolve_method(loss_fn, params, x, y, keys, state, method)
    size = default_chunk(params, method, n) if chunk_size is None else chunk_size

    def chunk(acc, data, _):
        xb, yb, kb = data
        weights = jnp.ones((batch_size(xb),), jnp.float32)
        _, sq = weighted_sums(loss_fn, params, state, xb, yb, weights, kb, method)
        return acc, sq

    return scan_chunks(chunk, None, (x, y, keys), size, stack="rows")[1]


def _vmap_moments(loss_fn, params, state, x, y, keys, shift):
    """``(G_c, |g_i|^2, sum_i |g_i - G_c|^2)`` of one chunk from its materialised ``g_i``.

    Shifted sums (Chan, Golub and LeVeque 1983, sec. 3): ``q = sum_i |g_i - S|^2`` for a
    shift ``S`` known before the chunk (the running mean), then
    ``sum_i |g_i - G_c|^2 = q - k |G_c - S|^2``, which cancels only as far as ``G_c - S``
    is large against the spread; one read of the gradients (no wait for ``G_c``), with
    every sum over examples a contraction with ones (fast on CPU).
    """
    g = _vmap_grads(loss_fn, params, state, x, y, keys)
    k = batch_size(x)

    def over_examples(a):  # sum over the leading example axis
        return jnp.tensordot(jnp.ones((k,), a.dtype), a, axes=1)

    mean = jax.tree.map(lambda a: over_examples(a) / k, g)
    q = sum(
        jnp.sum(over_examples(jnp.square(a - s[None])))
        for a, s in zip(jax.tree.leaves(g), jax.tree.leaves(shift), strict=True)
    )
    off = optax.tree_utils.tree_norm(jax.tree.map(jnp.subtract, mean, shift), squared=True)
    return mean, _per_example_sq(g), q - k * off


def stream_moments(
    loss_fn: LossFn,
    params: Params,
    state: Any,
    x: Any,
    y: Any,
    keys: Any,
    method: str,
    chunk_size: int | None,
) -> tuple[Params, jax.Array, jax.Array]:
    """``(G, |g_i|^2 (n,), sum_i |g_i - G|^2)`` in one numerically stable streaming pass.

    Each chunk yields its mean gradient ``G_c`` and its centred sum
    ``M_c = sum_{i in c} |g_i - G_c|^2`` (vmap path: from the chunk's materialised
    gradients, shifted by the running mean, the first chunk by ``g_0``; dense path:
    :func:`fnet.per_example.dense_trick.centred_moments`, no per-example gradient).
    Chunks are merged by Chan, Golub and LeVeque's pairwise update (1983, eq. 2.1): with
    ``m`` examples seen so far and a chunk of ``k``, ``D = G_c - G``,
    ``G += D k / (m + k)``, ``M += M_c + |D|^2 m k / (m + k)``. No step subtracts
    ``|G|^2`` from ``mean |g_i|^2``, so ``M`` keeps its relative precision however large
    ``G`` is against the spread of the ``g_i``. Memory as :func:`stream_sq_norms`.
    """
    n = batch_size(x)
    method = resolve_method(loss_fn, params, x, y, keys, state, method)
    size = min(n, default_chunk(params, method, n) if chunk_size is None else chunk_size)

    def chunk(carry, data, index):
        mean, m2 = carry
        xb, yb, kb = data
        k = batch_size(xb)
        if method == "dense":
            mean_c, sq, m2_c = dense_trick.centred_moments(loss_fn, params, xb, yb, kb)
        else:
            mean_c, sq, m2_c = _vmap_moments(loss_fn, params, state, xb, yb, kb, mean)
        # Counts and weights in at least float32 (a bfloat16 count stops at 256).
        seen = (index * size).astype(jnp.promote_types(m2.dtype, jnp.float32))
        frac = k / (seen + k)
        diff = jax.tree.map(lambda c, g: c - g, mean_c, mean)
        mean = jax.tree.map(lambda g, d: g + (d * frac).astype(g.dtype), mean, diff)
        cross = optax.tree_utils.tree_norm(diff, squared=True) * (seen * frac)
        return (mean, m2 + (m2_c + cross).astype(m2.dtype)), sq

    float_dtype = jnp.result_type(*[a.dtype for a in jax.tree.leaves(params)] or [jnp.float32])
    if method == "dense":
        start = jax.tree.map(jnp.zeros_like, params)
    else:  # the first example's gradient: the vmap path's shift for the first chunk
        first = jax.tree.map(lambda a: a[:1], (x, y, keys))
        start = jax.tree.map(lambda a: a[0], _vmap_grads(loss_fn, params, state, *first))
    init = (start, jnp.zeros((), float_dtype))
    (mean, m2), sq = scan_chunks(chunk, init, (x, y, keys), size, stack="rows")
    return mean, sq, m2


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (a default size) or ``chunk_size`` as an int >= 1; else TypeError/ValueError."""
    return check_int(chunk_size, "chunk_size", minimum=1, none_ok=True)


@functools.partial(jax.jit, static_argnames=("loss_fn", "method"))
def _grads_jit(loss_fn, params, x, y, key, state, method):
    keys = example_keys(key, batch_size(x))
    if resolve_method(loss_fn, params, x, y, keys, state, method) == "dense":
        return dense_trick.outer_grads(loss_fn, params, x, y, keys)
    return _vmap_grads(loss_fn, params, state, x, y, keys)


def grads(
    loss_fn: LossFn,
    params: Params,
    x: Any,
    y: Any,
    *,
    key: Any = None,
    state: Any = None,
    method: Method = "auto",
) -> Params:
    """Per-example gradients ``g_i``, materialised: ``jax.vmap(jax.grad(loss of example i))``.

    Args:
      loss_fn: an ``Objective`` ``(params, state, x, y, key, *, train)`` as ``fnet.fit``
        takes (called with ``train=False``), or a plain loss ``loss_fn(params, x, y[,
        key=][, state=]) -> scalar`` over a batch (:mod:`fnet.per_example.objective`).
        Must be hashable (a function or :class:`ModelLoss`): it is a static argument of
        ``jax.jit``.
      params: pytree of float arrays.
      x, y: inputs and targets with a leading example axis ``n`` (arrays or pytrees).
      key: optional PRNG key, split into one key per example (Dropout).
      state: optional non-trainable state passed to ``loss_fn`` (BatchNorm statistics).
      method: ``"vmap"``, ``"dense"`` (outer products ``a_i^T delta_i`` from one batched
        backward pass: same values, ~2x faster on CPU) or ``"auto"`` (dense if it applies).

    Returns:
      A pytree like ``params`` whose leaves have shape ``(n, *leaf.shape)`` and the
      leaves' dtypes. One compiled computation (``jax.jit``).
    """
    loss_fn = as_loss_fn(loss_fn)
    method = choose_path(loss_fn, params, x, y, key, state, method)  # type: ignore[assignment]
    return _grads_jit(loss_fn, params, x, y, key, state, method)


@functools.partial(jax.jit, static_argnames=("loss_fn", "method", "chunk_size"))
def _norms_jit(loss_fn, params, x, y, key, state, method, chunk_size):
    keys = example_keys(key, batch_size(x))
    sq = stream_sq_norms(loss_fn, params, state, x, y, keys, method, chunk_size)
    return jnp.sqrt(sq)


def norms(
    loss_fn: LossFn,
    params: Params,
    x: Any,
    y: Any,
    *,
    key: Any = None,
    state: Any = None,
    method: Method = "auto",
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> jax.Array:
    """Per-example gradient L2 norms ``|g_i|`` (over all parameters), shape ``(n,)``.

    Memory-lean: the ``"vmap"`` path holds at most ``chunk_size`` per-example gradients
    at once (default: ~32 MiB worth); the ``"dense"`` path (the dense-layer trick) holds
    none. ``method="auto"`` picks ``"dense"`` when ``loss_fn`` is a :class:`ModelLoss` of
    a serial chain of Dense and parameter-free layers, else ``"vmap"``. Arguments as in
    :func:`grads`; ``chunk_size`` (an int >= 1, or ``None``) is capped at ``n``. Returns
    the params' floating dtype.

    ``mesh``: a ``jax.sharding.Mesh``; the examples are split over its data axis (``N``
    divisible by the data-axis size, see :func:`fnet.per_example.stats`) and the result
    is a global ``(n,)`` array.

    Raises:
      TypeError, ValueError: ``chunk_size`` is not ``None`` or an int >= 1; ``method`` is
        unknown, or ``"dense"`` where the trick does not apply.
    """
    loss_fn = as_loss_fn(loss_fn)
    chunk_size = check_chunk_size(chunk_size)
    if mesh is not None:
        (x, y), (params, key, state) = distributed.shard_examples(
            (x, y), (params, key, state), mesh
        )
    method = choose_path(loss_fn, params, x, y, key, state, method)  # type: ignore[assignment]
    return _norms_jit(loss_fn, params, x, y, key, state, method, chunk_size)


@functools.partial(jax.jit, static_argnames=("loss_fn", "method"))
def _clip_jit(loss_fn, params, x, y, key, state, noise_key, clip_norm, noise_mult, method):
    n = batch_size(x)
    keys = example_keys(key, n)
    ones = jnp.ones((n,), jnp.float32)
    if resolve_method(loss_fn, params, x, y, keys, state, method) == "dense":
        _, sq = dense_trick.weighted_sums(loss_fn, params, x, y, ones, keys)
        # "Ghost clipping": a second backward pass of sum_i s_i l_i with s_i fixed.
        scale = jnp.minimum(1.0, clip_norm / jnp.maximum(jnp.sqrt(sq), 1e-12))
        total, _ = dense_trick.weighted_sums(loss_fn, params, x, y, lax.stop_gradient(scale), keys)
    else:
        g = _vmap_grads(loss_fn, params, state, x, y, keys)
        total, _ = optax.per_example_global_norm_clip(g, clip_norm)
    if noise_key is not None:
        leaves, treedef = jax.tree.flatten(total)
        ks = jax.random.split(noise_key, len(leaves))
        std = noise_mult * clip_norm
        leaves = [
            a + (std * jax.random.normal(k, a.shape, jnp.float32)).astype(a.dtype)
            for a, k in zip(leaves, ks, strict=True)
        ]
        total = jax.tree.unflatten(treedef, leaves)
    return jax.tree.map(lambda a: a / n, total)


def clip_and_average(
    loss_fn: LossFn,
    params: Params,
    x: Any,
    y: Any,
    *,
    clip_norm: float,
    noise_multiplier: float = 0.0,
    noise_key: Any = None,
    key: Any = None,
    state: Any = None,
    method: Method = "auto",
) -> Params:
    """The DP-SGD gradient: ``(1/n) (sum_i g_i min(1, C/|g_i|) + sigma C xi)``.

    Each example's gradient is scaled to norm at most ``C = clip_norm``, the scaled
    gradients are averaged over the batch of ``n``, and with ``noise_multiplier = sigma >
    0`` Gaussian noise ``xi ~ N(0, I)`` (drawn from ``noise_key``) is added to the sum
    before averaging. On the dense-trick path no per-example gradient is materialised
    ("ghost clipping": norms by the trick, then the gradient of ``sum_i s_i l_i``).
    Privacy accounting is not part of fnet. The ``"vmap"`` path is
    ``optax.per_example_global_norm_clip``; the dense path computes the same sum.

    Returns:
      A pytree like ``params`` (same dtypes).
    """
    loss_fn = as_loss_fn(loss_fn)
    method = choose_path(loss_fn, params, x, y, key, state, method)  # type: ignore[assignment]
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm!r}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    if noise_multiplier > 0 and noise_key is None:
        raise ValueError("noise_multiplier > 0 needs a noise_key")
    if noise_multiplier == 0:
        noise_key = None
    return _clip_jit(
        loss_fn, params, x, y, key, state, noise_key, clip_norm, noise_multiplier, method
    )


def clipped_gradient_fn(
    loss_fn: LossFn, *, clip_norm: float, noise_multiplier: float = 0.0, method: Method = "auto"
):
    """A train-step gradient function ``grad_fn(params, x, y, key) -> grads`` for DP-SGD.

    ``key`` is split into a noise key and per-example dropout keys (the latter passed to
    ``loss_fn`` only if it is a :class:`ModelLoss` with ``train=True`` or
    ``from_objective(objective, train=True)``; a bare ``Objective`` runs with
    ``train=False``).
    """
    loss_fn = as_loss_fn(loss_fn)

    def grad_fn(params: Params, x: Any, y: Any, key: Any) -> Params:
        k_noise, k_drop = jax.random.split(key)
        use_drop = getattr(loss_fn, "train", False)
        return clip_and_average(
            loss_fn,
            params,
            x,
            y,
            clip_norm=clip_norm,
            noise_multiplier=noise_multiplier,
            noise_key=k_noise if noise_multiplier > 0 else None,
            key=k_drop if use_drop else None,
            method=method,
        )

    return grad_fn
