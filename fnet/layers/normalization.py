"""Normalization layers: LayerNorm (stateless) and BatchNorm (running statistics as state)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from fnet.core import (
    Model,
    StatefulModel,
    as_shape,
    broadcast_features,
    check_input,
    require_params,
)

__all__ = ["BatchNorm", "LayerNorm"]


def _check_eps(eps: float, layer: str) -> None:
    if not eps > 0:
        raise ValueError(f"{layer}: eps must be positive, got {eps!r}")


def LayerNorm(
    *, eps: float = 1e-5, param_dtype: jnp.dtype = jnp.float32, name: str = "layernorm"
) -> Model:
    """Normalize each example over its last axis, then scale and shift.

    ``(..., C) -> (..., C)``; params ``{"scale": (C,), "offset": (C,)}`` (init 1 and 0).
    """
    _check_eps(eps, "LayerNorm")

    def init(key, input_shape):
        del key
        shape = as_shape(input_shape, "LayerNorm", min_rank=2)
        c = shape[-1]
        return shape, {"scale": jnp.ones((c,), param_dtype), "offset": jnp.zeros((c,), param_dtype)}

    def apply(params, x, *, key=None, train=False):
        del key, train
        require_params(params, ("scale", "offset"), "LayerNorm")
        check_input(x, "LayerNorm", last=params["scale"].shape[0])
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        scale = broadcast_features(params["scale"], x.ndim)
        offset = broadcast_features(params["offset"], x.ndim)
        return (x - mean) * lax.rsqrt(var + eps) * scale + offset

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

    ``axis_name``: also average the statistics over a named mapped axis, so that
    ``jax.vmap(..., axis_name=axis_name)`` over single examples (or ``shard_map`` over
    devices) computes the same statistics as the whole batch. Per-example gradients use
    ``train=False`` (frozen statistics): see ``docs/design.md``.
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
        require_params(params, ("scale", "offset"), "BatchNorm")
        check_input(x, "BatchNorm", last=params["scale"].shape[0])
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            mean_sq = jnp.mean(jnp.square(x), axis=axes)
            if axis_name is not None:
                mean, mean_sq = lax.pmean((mean, mean_sq), axis_name)
            var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
            new_state = {
                "mean": momentum * state["mean"] + (1 - momentum) * lax.stop_gradient(mean),
                "var": momentum * state["var"] + (1 - momentum) * lax.stop_gradient(var),
            }
        else:
            mean, var, new_state = state["mean"], state["var"], state
        inv = lax.rsqrt(var.astype(x.dtype) + eps) * params["scale"]
        mean = broadcast_features(mean.astype(x.dtype), x.ndim)
        inv = broadcast_features(inv, x.ndim)
        y = (x - mean) * inv + broadcast_features(params["offset"], x.ndim)
        return y, new_state

    config = {
        "momentum": float(momentum),
        "eps": float(eps),
        "axis_name": axis_name,
        "param_dtype": jnp.dtype(param_dtype).name,
    }
    return StatefulModel(init, apply, name, kind="BatchNorm", config=config)
