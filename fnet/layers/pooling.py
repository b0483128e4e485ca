"""Max and average pooling over NHWC images.

Two formulations give the same values and derivatives (max pooling bit for bit; average
pooling up to the order in which XLA adds a window's entries, which differs between
CPUs: one rounding):

* **Tiled** (windows that do not overlap, ``strides == window``, with ``VALID`` padding
  or ``SAME`` padding on sizes the window divides; the default ``MaxPool(2)``): the
  image is cropped to whole windows and reshaped to ``(N, H', wh, W', ww, C)``, then
  reduced over the two window axes. On CPU this is ~10x cheaper than
  ``lax.reduce_window``'s gradient (select-and-scatter), see issue 10 and
  ``/work/shared/probes/conv_while_loop.py``.
* **Windowed** (everything else: overlapping windows, padded edges): ``lax.reduce_window``.

Ties in max pooling: the whole gradient of a window goes to the FIRST maximal element
in row-major order within the window (lowest row, then lowest column), as
``lax.reduce_window``'s gradient (select-and-scatter with ``>=``) does; the tiled form
implements the same rule with a custom JVP, so forward- and reverse-mode derivatives
(Hessian-vector products included) agree between the two formulations.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fnet.core import Model, as_shape, check_input, float_input
from fnet.errors import ShapeError
from fnet.layers.conv import _padding, _pair

__all__ = ["AvgPool", "MaxPool"]


def _blocks(x: jax.Array, win: tuple[int, int]) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, H // wh, wh, W // ww, ww, C)``, cropping partial windows."""
    n, h, w, c = x.shape
    (wh, ww), (ho, wo) = win, (h // win[0], w // win[1])
    x = x[:, : ho * wh, : wo * ww, :]
    return x.reshape(n, ho, wh, wo, ww, c)


def _first_max_mask(blocks: jax.Array, peak: jax.Array) -> jax.Array:
    """True at the first maximal element (row-major in the window) of each window."""
    _, _, wh, _, ww, _ = blocks.shape
    taken = jnp.zeros(peak.shape, bool)
    rows = []
    for a in range(wh):
        cols = []
        for b in range(ww):
            first = (blocks[:, :, a, :, b, :] == peak) & ~taken
            taken = taken | first
            cols.append(first)
        rows.append(jnp.stack(cols, axis=3))
    return jnp.stack(rows, axis=2)


def _tiled_max(x: jax.Array, win: tuple[int, int]) -> jax.Array:
    @jax.custom_jvp
    def pool(x):
        return jnp.max(_blocks(x, win), axis=(2, 4))

    @pool.defjvp
    def pool_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        blocks = _blocks(x, win)
        peak = jnp.max(blocks, axis=(2, 4))
        mask = _first_max_mask(blocks, peak)
        dy = jnp.sum(jnp.where(mask, _blocks(dx, win), jnp.zeros((), dx.dtype)), axis=(2, 4))
        return peak, dy

    return pool(x)


def _tiles(win, stride, pad: str, hw: tuple[int, int]) -> bool:
    """True if the windows do not overlap and cover the (cropped) input without padding."""
    if tuple(stride) != tuple(win):
        return False
    return pad == "VALID" or all(s % k == 0 for s, k in zip(hw, win, strict=True))


def _pool(kind: str, window, strides, padding: str, name: str) -> Model:
    desc = f"{kind}({window})"
    win = _pair(window, "window", desc)
    stride = _pair(strides if strides is not None else window, "strides", desc)
    pad = _padding(padding, desc)
    dims, steps = (1, *win, 1), (1, *stride, 1)

    def windowed(x):
        if kind == "MaxPool":
            return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, pad)
        sums = lax.reduce_window(x, 0.0, lax.add, dims, steps, pad)
        # Average over the window's real (unpadded) entries only.
        counts = lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype), 0.0, lax.add, win, stride, pad)
        return sums / counts[None, :, :, None]

    def pool(x):
        if not _tiles(win, stride, pad, x.shape[1:3]):
            return windowed(x)
        if kind == "MaxPool":
            return _tiled_max(x, win)
        return jnp.mean(_blocks(x, win), axis=(2, 4))

    def check_fits(spatial, shown):
        if pad == "VALID" and (spatial[0] < win[0] or spatial[1] < win[1]):
            raise ShapeError(
                f"{desc}: the {win} window (VALID padding) does not fit inside inputs of "
                f"{shown}, so the output would be empty; use a smaller window, "
                "padding='SAME', or larger inputs"
            )

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, desc, min_rank=4)
        if len(shape) != 4:
            raise ShapeError(f"{desc} expects an NHWC input_shape of rank 4, got {shape}")
        check_fits(shape[1:3], f"input_shape {shape}")
        out = jax.eval_shape(windowed, jax.ShapeDtypeStruct((1, *shape[1:]), jnp.float32)).shape
        return (shape[0], *out[1:]), {}

    def apply(params, x, *, key=None, train=False):
        del params, key, train
        x = float_input(x, desc)
        check_input(x, desc, rank=4)
        check_fits(x.shape[1:3], f"shape {x.shape}")
        return pool(x)

    config = {"window": list(win), "strides": list(stride), "padding": pad}
    return Model(init, apply, name, kind=kind, config=config)


def MaxPool(
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: str = "VALID",
    *,
    name: str = "maxpool",
) -> Model:
    """Max over ``window`` patches: ``(N, H, W, C) -> (N, H', W', C)``; strides default to
    the window (non-overlapping).

    ``VALID``: ``H' = floor((H - wh) / sh) + 1``; ``SAME``: ``H' = ceil(H / sh)``. Integer
    inputs are cast to float32; float inputs keep their dtype. On a tie the gradient goes
    to the first maximal element of the window in row-major order (see the module
    docstring).

    Raises:
      ValueError: bad ``window``, ``strides`` or ``padding``.
      ShapeError: inputs not of rank 4, or a VALID window larger than the input (from
        ``init`` and ``apply``, naming this layer).
    """
    return _pool("MaxPool", window, strides, padding, name)


def AvgPool(
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: str = "VALID",
    *,
    name: str = "avgpool",
) -> Model:
    """Mean over ``window`` patches: ``(N, H, W, C) -> (N, H', W', C)``; with SAME padding
    the mean is over the real (unpadded) entries of each window.

    Integer inputs (``uint8`` pixels) are cast to float32 before summing, so
    ``AvgPool(2)`` of ``[[200, 100], [150, 16]]`` is 116.5, not a wrapped-around sum.

    Raises:
      ValueError: bad ``window``, ``strides`` or ``padding``.
      ShapeError: inputs not of rank 4, or a VALID window larger than the input.
    """
    return _pool("AvgPool", window, strides, padding, name)
