"""Dense (fully connected) layer ``y = x W + b`` and the slides' "bias trick"."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet import initializers
from fnet._checks import check_int
from fnet.core import (
    Model,
    as_shape,
    broadcast_features,
    check_input,
    check_param_shapes,
    compute_dtype_of,
    describe_initializer,
    float_input,
)

__all__ = ["Dense", "append_ones", "fold_bias"]


def Dense(
    out_dim: int,
    *,
    w_init: str | initializers.Initializer = "glorot_normal",
    b_init: str | initializers.Initializer = "zeros",
    param_dtype: jnp.dtype = jnp.float32,
    compute_dtype: jnp.dtype | None = None,
    name: str = "dense",
) -> Model:
    """A dense layer: ``(..., in) -> (..., out_dim)``, ``y = x @ w + b``.

    Params: ``{"w": (in, out_dim), "b": (out_dim,)}`` of ``param_dtype``. ``w`` is stored
    input-major (the slides' module view ``f(z) = z W + b^T``), so a mini-batch is one
    matmul. Default init: ``w ~ N(0, 2/(in+out))`` (glorot_normal), ``b = 0``.

    Dtypes: integer or bool inputs (``uint8`` pixels) are cast to the params' dtype
    first. ``compute_dtype`` (mixed precision, e.g. ``jnp.bfloat16``): params stay
    ``param_dtype`` (and so do their gradients), but ``x``, ``w`` and ``b`` are cast to
    ``compute_dtype`` for the matmul and the output has ``compute_dtype``; ``None``
    (default) computes in the promoted dtype of ``x`` and the params.

    Raises:
      TypeError: ``out_dim`` not an int (``True`` and ``2.0`` are not).
      ValueError: ``out_dim < 1``, ``compute_dtype`` not floating.
      ShapeError (in ``apply``): params whose shapes do not fit ``out_dim`` (params of
        another model), or inputs whose last dimension is not the params' ``in``.
    """
    out_dim = check_int(out_dim, "Dense: out_dim", minimum=1)
    w_fn, b_fn = initializers.get(w_init), initializers.get(b_init)
    desc = f"Dense({out_dim})"
    cdtype = compute_dtype_of(compute_dtype, desc)

    def init(key, input_shape):
        shape = as_shape(input_shape, desc, min_rank=2)
        k_w, k_b = jax.random.split(key)
        params = {
            "w": w_fn(k_w, (shape[-1], out_dim), param_dtype),
            "b": b_fn(k_b, (out_dim,), param_dtype),
        }
        return (*shape[:-1], out_dim), params

    def apply(params, x, *, key=None, train=False):
        del key, train
        check_param_shapes(params, {"w": (None, out_dim), "b": (out_dim,)}, desc)
        w, b = params["w"], params["b"]
        x = float_input(x, desc, w.dtype)
        check_input(x, desc, last=w.shape[0])
        if cdtype is not None:
            x, w, b = x.astype(cdtype), w.astype(cdtype), b.astype(cdtype)
        return x @ w + broadcast_features(b, x.ndim)

    config = {
        "out_dim": out_dim,
        "w_init": describe_initializer(w_init),
        "b_init": describe_initializer(b_init),
        "param_dtype": jnp.dtype(param_dtype).name,
        "compute_dtype": None if cdtype is None else cdtype.name,
    }
    return Model(init, apply, name, kind="Dense", config=config)


def append_ones(x: jax.Array) -> jax.Array:
    """The bias trick's input: ``(..., d) -> (..., d + 1)`` with a constant 1 appended."""
    return jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)


def fold_bias(params: dict) -> jax.Array:
    """The bias trick's weight: Dense params -> ``(in + 1, out)`` matrix ``[w; b]``.

    ``append_ones(x) @ fold_bias(p)`` equals ``Dense.apply(p, x)``.
    """
    return jnp.concatenate([params["w"], params["b"][None, :]], axis=0)
