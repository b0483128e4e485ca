"""fnet.per_example: per-example gradients, norms (both paths), clipping, BatchNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import per_example as pe
from fnet.losses import softmax_cross_entropy

N = 6


def _mlp_case(dropout: float = 0.0):
    model = fnet.models.mlp([7], 3, "tanh", dropout=dropout)
    _, params = model.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (N, 4), jnp.float32)
    y = jnp.arange(N, dtype=jnp.int32) % 3
    return pe.model_loss(model, softmax_cross_entropy, train=dropout > 0), params, x, y


def _conv_case():
    model = fnet.models.convnet(3, channels=(2,), hidden=5)
    _, params = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (N, 8, 8, 1), jnp.float32)
    y = jnp.arange(N, dtype=jnp.int32) % 3
    return pe.model_loss(model, softmax_cross_entropy), params, x, y


def _loop_grads(loss_fn, params, x, y, key=None, state=None):
    """The reference: one ``jax.grad`` call per example (compiled once, called n times)."""
    keys = None if key is None else jax.random.split(key, x.shape[0])

    @jax.jit
    def one(p, xi, yi, ki, state):
        kw = {} if ki is None else {"key": ki}
        if state is not None:
            kw["state"] = state
        return jax.grad(lambda p: loss_fn(p, xi, yi, **kw))(p)

    out = [
        one(params, x[i : i + 1], y[i : i + 1], None if keys is None else keys[i], state)
        for i in range(x.shape[0])
    ]
    return jax.tree.map(lambda *a: jnp.stack(a), *out)


def _flat_norms(g):
    return jnp.sqrt(
        sum(jnp.sum(jnp.square(a.reshape(a.shape[0], -1)), 1) for a in jax.tree.leaves(g))
    )


def _assert_tree_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("case", ["mlp", "convnet", "dropout"])
def test_grads_equal_a_python_loop_of_single_example_grads(case):
    loss_fn, params, x, y = {"mlp": _mlp_case, "convnet": _conv_case}.get(
        case, lambda: _mlp_case(0.5)
    )()
    key = jax.random.key(7) if case == "dropout" else None
    want = _loop_grads(loss_fn, params, x, y, key)
    for method in ["vmap"] + (["dense"] if case != "convnet" else []):
        got = pe.grads(loss_fn, params, x, y, key=key, method=method)
        _assert_tree_close(got, want)
        assert jax.tree.map(lambda a: a.dtype, got) == jax.tree.map(lambda a: a.dtype, params)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_or_sum_of_per_example_grads_is_the_batch_gradient(reduction):
    model = fnet.models.mlp([5], 3)
    _, params = model.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (N, 4), jnp.float32)
    y = jnp.arange(N, dtype=jnp.int32) % 3

    def loss_fn(p, x, y):  # a plain function: the vmap path
        return softmax_cross_entropy(model.apply(p, x), y, reduction=reduction)

    g = pe.grads(loss_fn, params, x, y)
    reduce = jnp.mean if reduction == "mean" else jnp.sum
    _assert_tree_close(jax.tree.map(lambda a: reduce(a, 0), g), jax.grad(loss_fn)(params, x, y))


@pytest.mark.parametrize(("case", "chunk_size"), [("mlp", None), ("convnet", 4), ("dropout", 4)])
def test_norms_equal_the_norms_of_grads_on_every_path(case, chunk_size):
    loss_fn, params, x, y = {"mlp": _mlp_case, "convnet": _conv_case}.get(
        case, lambda: _mlp_case(0.5)
    )()
    key = jax.random.key(3) if case == "dropout" else None
    want = _flat_norms(pe.grads(loss_fn, params, x, y, key=key))
    methods = ["vmap", "auto"] + (["dense"] if case != "convnet" else [])
    for method in methods:
        got = pe.norms(loss_fn, params, x, y, key=key, method=method, chunk_size=chunk_size)
        assert got.shape == (N,)
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=method)


def test_auto_uses_the_dense_trick_only_where_it_applies():
    mlp_loss, mp, mx, my = _mlp_case()
    conv_loss, cp, cx, cy = _conv_case()
    assert pe.uses_dense_trick(mlp_loss, mp, mx, my)
    assert not pe.uses_dense_trick(conv_loss, cp, cx, cy)
    plain = lambda p, x, y: mlp_loss(p, x, y)
    assert not pe.uses_dense_trick(plain, mp, mx, my)
    with pytest.raises(ValueError, match="dense"):
        pe.norms(conv_loss, cp, cx, cy, method="dense")
    with pytest.raises(ValueError, match="method"):
        pe.norms(conv_loss, cp, cx, cy, method="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["vmap", "dense"])
def test_clipping_bounds_every_examples_norm(method):
    loss_fn, params, x, y = _mlp_case()
    norms = pe.norms(loss_fn, params, x, y)
    c = float(jnp.median(norms))
    g = pe.grads(loss_fn, params, x, y)
    for i in (0, 1):  # one example: the result is that example's clipped gradient
        one = pe.clip_and_average(
            loss_fn, params, x[i : i + 1], y[i : i + 1], clip_norm=c, method=method
        )
        want = min(float(norms[i]), c)
        np.testing.assert_allclose(float(pe.tree_sq_norm(one)) ** 0.5, want, rtol=1e-5)
    got = pe.clip_and_average(loss_fn, params, x, y, clip_norm=c, method=method)
    scale = jnp.minimum(1.0, c / norms)
    want = jax.tree.map(lambda a: jnp.tensordot(scale.astype(a.dtype), a, axes=1) / N, g)
    _assert_tree_close(got, want)
    big = pe.clip_and_average(loss_fn, params, x, y, clip_norm=1e9, method=method)
    _assert_tree_close(big, jax.grad(loss_fn)(params, x, y))


def test_clip_noise_has_standard_deviation_sigma_c_over_n():
    model = fnet.serial(fnet.Dense(50))
    _, params = model.init(jax.random.key(0), (-1, 40))
    x = jax.random.normal(jax.random.key(1), (4, 40), jnp.float32)
    y = jnp.arange(4, dtype=jnp.int32)
    loss_fn = pe.model_loss(model, softmax_cross_entropy)
    clean = pe.clip_and_average(loss_fn, params, x, y, clip_norm=0.5)
    noisy = pe.clip_and_average(
        loss_fn, params, x, y, clip_norm=0.5, noise_multiplier=2.0, noise_key=jax.random.key(9)
    )
    diff = np.asarray(noisy["dense_0"]["w"] - clean["dense_0"]["w"]).ravel()
    assert abs(diff.std() * 4 / (2.0 * 0.5) - 1) < 0.05  # 2000 draws
    with pytest.raises(ValueError, match="noise_key"):
        pe.clip_and_average(loss_fn, params, x, y, clip_norm=0.5, noise_multiplier=1.0)


def test_clipped_gradient_fn_is_a_train_step_gradient():
    loss_fn, params, x, y = _mlp_case()
    grad_fn = pe.clipped_gradient_fn(loss_fn, clip_norm=1e9)
    _assert_tree_close(
        jax.jit(grad_fn)(params, x, y, jax.random.key(0)), jax.grad(loss_fn)(params, x, y)
    )


def _batchnorm_case():
    model = fnet.serial(fnet.Dense(5), fnet.BatchNorm(), fnet.Relu(), fnet.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    state = {
        "batchnorm_0": {
            "mean": jnp.full((5,), 0.3, jnp.float32),
            "var": jnp.full((5,), 2.0, jnp.float32),
        }
    }
    x = jax.random.normal(jax.random.key(1), (N, 4), jnp.float32)
    y = jnp.arange(N, dtype=jnp.int32) % 3
    return model, params, state, x, y


def test_batchnorm_per_example_grads_use_frozen_statistics():
    model, params, state, x, y = _batchnorm_case()
    loss_fn = pe.model_loss(model, softmax_cross_entropy)

    def frozen(p, x, y, state):  # the model with train=False: running statistics
        return softmax_cross_entropy(model.apply(p, state, x, train=False)[0], y)

    got = pe.grads(loss_fn, params, x, y, state=state)
    _assert_tree_close(got, _loop_grads(frozen, params, x, y, state=state))
    np.testing.assert_allclose(
        pe.norms(loss_fn, params, x, y, state=state), _flat_norms(got), rtol=1e-5
    )
    assert not pe.uses_dense_trick(loss_fn, params, x, y, state=state)
    with pytest.raises(ValueError, match="train=False"):
        pe.model_loss(model, softmax_cross_entropy, train=True)
    with pytest.raises(ValueError, match="state"):
        loss_fn(params, x, y)


def test_per_example_grads_compile_once_per_shape():
    loss_fn, params, x, y = _mlp_case()
    traces = []

    def counted(p, x, y):
        traces.append(1)
        return loss_fn(p, x, y)

    for _ in range(3):
        pe.grads(counted, params, x, y)
    assert len(traces) == 1
