"""Normalization layers: LayerNorm (stateless) and BatchNorm (running statistics as state)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnet.core import (
    Model,
    StatefulModel,
    as_shape,
    broadcast_features,
    check_input,
    check_param_shapes,
    float_input,
)
from fnet.errors import ShapeError

__all__ = ["BatchNorm", "LayerNorm"]


def _check_eps(eps: float, layer: str) -> None:
    if not eps > 0:
        raise ValueError(f"{layer}: eps must be positive, got {eps!r}")


def _stat_dtype(x: jax.Array) -> jnp.dtype:
    """Statistics are computed in at least float32 (bfloat16/float16 inputs included)."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _check_norm_params(params, layer: str) -> int | None:
    """Check ``{"scale": (C,), "offset": (C,)}``; return ``C`` (None if malformed)."""
    scale = params.get("scale") if isinstance(params, dict) else None
    c = scale.shape[0] if scale is not None and np.ndim(scale) == 1 else None
    check_param_shapes(params, {"scale": (c,), "offset": (c,)}, layer)
    return c


def LayerNorm(
    *, eps: float = 1e-5, param_dtype: jnp.dtype = jnp.float32, name: str = "layernorm"
) -> Model:
    """Normalize each example over its last axis, then scale and shift.

    ``(..., C) -> (..., C)``; params ``{"scale": (C,), "offset": (C,)}`` (init 1 and 0).
    The variance is computed in two passes, ``mean((x - mean(x))^2)``, in at least
    float32, so a large common offset (mean 1e4, std 1) does not cancel the variance
    away. Integer inputs are cast to ``param_dtype``; the output has the (float)
    input's dtype.

    Raises:
      ValueError: ``eps`` not positive.
      ShapeError (in ``apply``): params not of shape ``(C,)``, or inputs whose last
        dimension is not ``C``.
    """
    _check_eps(eps, "LayerNorm")

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, "LayerNorm", min_rank=2)
        c = shape[-1]
        return shape, {"scale": jnp.ones((c,), param_dtype), "offset": jnp.zeros((c,), param_dtype)}

    def apply(params, x, *, key=None, train=False):
        del key, train
        c = _check_norm_params(params, "LayerNorm")
        x = float_input(x, "LayerNorm", params["scale"].dtype)
        check_input(x, "LayerNorm", last=c)
        dtype = _stat_dtype(x)
        xs = x.astype(dtype)
        mean = jnp.mean(xs, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xs - mean), axis=-1, keepdims=True)
        scale = broadcast_features(params["scale"].astype(dtype), x.ndim)
        offset = broadcast_features(params["offset"].astype(dtype), x.ndim)
        return ((xs - mean) * lax.rsqrt(var + eps) * scale + offset).astype(x.dtype)

    config = {"eps": float(eps), "param_dtype": jnp.dtype(param_dtype).name}
    return Model(init, apply, name, kind="LayerNorm", config=config)


def BatchNorm(
    *,
    momentum: float = 0.99,
    eps: float = 1e-5,
    axis_name: str | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    name: str = "batchnorm",
) -> StatefulModel:
    """Batch normalization over every axis but the last (features), with running statistics.

    ``(N, ..., C) -> (N, ..., C)``. Params ``{"scale": (C,), "offset": (C,)}``; state
    ``{"mean": (C,), "var": (C,)}`` (float32, init 0 and 1).

    - ``train=True``: normalize with the batch's mean and (biased) variance and return the
      state moved toward them: ``new = momentum * old + (1 - momentum) * batch``.
    - ``train=False``: normalize with the running statistics; the state is returned as is.

    Numerics: the batch variance is computed in two passes, ``mean((x - mean(x))^2)``
    (never ``E[x^2] - E[x]^2``, which cancels catastrophically for a feature of mean 1e4
    and std 1 in float32), in at least float32 (bfloat16/float16 inputs included).
    Integer inputs (``uint8`` pixels) are cast to ``param_dtype`` first. The output has
    the (float) input's dtype; params and state keep their own dtypes whatever the input.

    ``axis_name``: also average the statistics over a named mapped axis, so that
    ``jax.vmap(..., axis_name=axis_name)`` over single examples (or ``shard_map`` over
    devices) computes the same statistics as the whole batch (mean first, then the mean
    squared deviation from that global mean: equal shard sizes assumed). Per-example
    gradients use ``train=False`` (frozen statistics): see ``docs/design.md``.

    Raises:
      ValueError: ``momentum`` outside ``[0, 1)`` or ``eps`` not positive.
      ShapeError (in ``apply``): params or state not of shape ``(C,)``; inputs whose last
        dimension is not ``C``; and ``train=True`` on a batch holding ONE value per
        feature (one example of a dense layer's features, without ``axis_name``): its
        variance is 0, so every output would equal ``offset`` whatever the input. Train
        with batches of at least 2 examples (``fit`` drops such a one-example tail for
        stateful models) or evaluate with ``train=False``.
    """
    _check_eps(eps, "BatchNorm")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"BatchNorm: momentum must lie in [0, 1), got {momentum!r}")

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, "BatchNorm", min_rank=2)
        c = shape[-1]
        params = {"scale": jnp.ones((c,), param_dtype), "offset": jnp.zeros((c,), param_dtype)}
        state = {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        del key
        c = _check_norm_params(params, "BatchNorm")
        check_param_shapes(state, {"mean": (c,), "var": (c,)}, "BatchNorm", "state")
        x = float_input(x, "BatchNorm", params["scale"].dtype)
        check_input(x, "BatchNorm", last=c)
        dtype = _stat_dtype(x)
        xs = x.astype(dtype)
        if train:
            axes = tuple(range(x.ndim - 1))
            if axis_name is None and math.prod(x.shape[:-1]) == 1:
                raise ShapeError(
                    f"BatchNorm: train=True on inputs of shape {x.shape} has one value per "
                    "feature, so the batch variance is 0 and every output would equal the "
                    "offset; train with at least 2 examples per batch, or use train=False"
                )
            mean = jnp.mean(xs, axis=axes)
            if axis_name is not None:
                mean = lax.pmean(mean, axis_name)
            var = jnp.mean(jnp.square(xs - broadcast_features(mean, x.ndim)), axis=axes)
            if axis_name is not None:
                var = lax.pmean(var, axis_name)
            new_state = {
                k: (momentum * state[k] + (1 - momentum) * lax.stop_gradient(v)).astype(
                    state[k].dtype
                )
                for k, v in (("mean", mean), ("var", var))
            }
        else:
            mean, var, new_state = state["mean"].astype(dtype), state["var"].astype(dtype), state
        inv = broadcast_features(lax.rsqrt(var + eps) * params["scale"].astype(dtype), x.ndim)
        offset = broadcast_features(params["offset"].astype(dtype), x.ndim)
        y = (xs - broadcast_features(mean, x.ndim)) * inv + offset
        return y.astype(x.dtype), new_state

    config = {
        "momentum": float(momentum),
        "eps": float(eps),
        "axis_name": axis_name,
        "param_dtype": jnp.dtype(param_dtype).name,
    }
    return StatefulModel(init, apply, name, kind="BatchNorm", config=config)
