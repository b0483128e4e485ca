"""Streaming over the leading (example) axis in chunks: full chunks in a scan, an exact tail.

One helper, :func:`scan_chunks`, for every loop of fnet that walks ``N`` rows in chunks
of ``size`` while carrying a state: the ``N // size`` full chunks run inside one
``lax.scan`` and are sliced from the data in place (``lax.dynamic_slice_in_dim``); the
last ``N % size`` rows form ONE more chunk of exactly that size. Nothing is padded and no
reshaped copy of the data is made, so memory stays one chunk's work plus the data itself,
and every row is seen exactly once (a padded tail would need a mask in every reduction).

For a map without a carry, use ``jax.lax.map(f, xs, batch_size=size)``: it does the same
(``vmap`` within chunks, a scan over them, an exact remainder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp
from jax import lax

from fnet._checks import check_int

__all__ = ["Stack", "leading_size", "scan_chunks", "slice_rows"]

Stack: TypeAlias = Literal["chunks", "rows"]


def leading_size(tree: Any) -> int:
    """The leading dimension ``N`` shared by every array leaf of ``tree``.

    Raises:
      ValueError: the tree has no leaves, or its leaves disagree on the leading size.
    """
    sizes = {int(jnp.shape(leaf)[0]) for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share one leading example axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def slice_rows(tree: Any, start: Any, size: int) -> Any:
    """Rows ``[start, start + size)`` of every leaf, by ``lax.dynamic_slice_in_dim``.

    ``start`` may be traced (a scan index), ``size`` is static. Reads in place: no copy of
    the whole leaf is made.
    """
    return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, size), tree)


def scan_chunks(
    f: Callable[[Any, Any, jax.Array], tuple[Any, Any]],
    init: Any,
    xs: Any,
    size: int,
    *,
    stack: Stack = "chunks",
) -> tuple[Any, Any]:
    """Fold ``f`` over consecutive chunks of ``size`` rows of ``xs``: full chunks, then the tail.

    Computes ``carry, out_c = f(carry, chunk_c, c)`` for chunks ``c = 0, 1, ...`` of
    ``xs`` (every leaf sliced along its leading axis ``N``). Chunks ``0 .. N//size - 1``
    hold ``size`` rows each and run in one ``lax.scan`` (``f`` is traced once for them);
    when ``N % size > 0`` one last chunk of exactly ``N % size`` rows follows (``f`` is
    traced once more, at that size). Traceable: call it inside ``jax.jit``.

    Args:
      f: ``f(carry, chunk, index) -> (carry, out)``; ``chunk`` has the structure of
        ``xs`` with leading size ``size`` (or the tail's); ``index`` is the chunk's
        int32 index. ``carry`` must keep its structure, shapes and dtypes.
      init: the initial carry (any pytree; ``None`` for none).
      xs: a pytree of arrays sharing a leading axis ``N >= 1``.
      size: the chunk size, an int ``>= 1`` (static); ``size >= N`` gives one chunk.
      stack: how the per-chunk outputs are combined:
        ``"chunks"``: leaves stacked along a new leading axis, ``(n_chunks, ...)``;
        ``"rows"``: each output leaf has a leading axis of its chunk's length and the
        chunks are concatenated, ``(N, ...)`` (per-row results in order).

    Returns:
      ``(carry, outs)``.

    Raises:
      TypeError, ValueError: ``size`` is not an int ``>= 1``; ``xs`` is empty or its
        leaves disagree on ``N``; ``stack`` is not ``"chunks"`` or ``"rows"``.
    """
    size = check_int(size, "scan_chunks: size", minimum=1)
    if stack not in ("chunks", "rows"):
        raise ValueError(f"scan_chunks: stack must be 'chunks' or 'rows', got {stack!r}")
    n = leading_size(xs)
    if n < 1:
        raise ValueError("scan_chunks: xs has no rows (N = 0)")
    size = min(size, n)
    steps, tail = divmod(n, size)

    def body(carry: Any, i: jax.Array) -> tuple[Any, Any]:
        return f(carry, slice_rows(xs, i * size, size), i)

    if steps == 1:  # no loop: a smaller program, faster to compile
        carry, out = body(init, jnp.int32(0))
        outs = jax.tree.map(lambda o: o[None], out)
    else:
        carry, outs = lax.scan(body, init, jnp.arange(steps, dtype=jnp.int32))
    if stack == "rows":
        outs = jax.tree.map(lambda o: o.reshape(steps * o.shape[1], *o.shape[2:]), outs)
    if tail:
        rest = jax.tree.map(lambda a: a[steps * size :], xs)
        carry, last = f(carry, rest, jnp.int32(steps))
        glue = (lambda o: o) if stack == "rows" else (lambda o: o[None])
        outs = jax.tree.map(lambda s, t: jnp.concatenate([s, glue(t)]), outs, last)
    return carry, outs
