"""fnet.per_example: per-example gradients, norms (both paths), clipping, BatchNorm."""

from __future__ import annotations

import functools

import chex
import jax
import numpy as np
import pytest

import fnet
from fnet import per_example as pe
from fnet.losses import softmax_cross_entropy

N = 6
# Test data and reference computations use NumPy and single jitted calls: on a busy
# 2-core machine every eager JAX op costs a compilation, which would dominate run time.


def _init(model, shape):
    """``model.init`` as ONE compiled call; params as NumPy arrays."""
    out = jax.jit(model.init, static_argnums=1)(jax.random.key(0), shape)
    return jax.tree.map(np.asarray, out[1:])


def _data(shape):
    x = np.random.default_rng(1).standard_normal((N, *shape)).astype(np.float32)
    return x, np.arange(N, dtype=np.int32) % 3


@functools.cache  # the same objects in every test: jit caches hit across tests
def _mlp_case(dropout: float = 0.0):
    model = fnet.models.mlp([7], 3, "tanh", dropout=dropout)
    (params,) = _init(model, (-1, 4))
    return pe.model_loss(model, softmax_cross_entropy, train=dropout > 0), params, *_data((4,))


@functools.cache
def _conv_case():
    model = fnet.models.convnet(3, channels=(2,), hidden=5)
    (params,) = _init(model, (-1, 8, 8, 1))
    return pe.model_loss(model, softmax_cross_entropy), params, *_data((8, 8, 1))


def _loop_grads(loss_fn, params, x, y, key=None, state=None):
    """The reference: one ``jax.grad`` call per example (compiled once, called n times)."""

    @jax.jit
    def one(p, xi, yi, i, state):
        kw = {} if key is None else {"key": jax.random.split(key, x.shape[0])[i]}
        if state is not None:
            kw["state"] = state
        return jax.grad(lambda p: loss_fn(p, xi, yi, **kw))(p)

    out = [one(params, x[i : i + 1], y[i : i + 1], i, state) for i in range(x.shape[0])]
    return jax.tree.map(lambda *a: np.stack(a), *out)


def _flat_norms(g):
    leaves = [np.asarray(a).reshape(a.shape[0], -1) for a in jax.tree.leaves(g)]
    return np.sqrt(sum(np.sum(np.square(a), 1) for a in leaves))


def _assert_tree_close(a, b, rtol=1e-5, atol=1e-6):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)  # names the failing leaf


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


def test_mean_of_per_example_grads_is_the_batch_gradient_and_sum_for_a_sum_loss():
    model = fnet.models.mlp([5], 3)
    (params,) = _init(model, (-1, 4))
    x, y = _data((4,))

    def loss_fn(p, x, y, reduction="mean"):  # a plain function: the vmap path
        return softmax_cross_entropy(model.apply(p, x), y, reduction=reduction)

    g = jax.tree.map(np.asarray, pe.grads(loss_fn, params, x, y))
    batch = jax.jit(jax.grad(loss_fn), static_argnums=3)
    _assert_tree_close(jax.tree.map(lambda a: a.mean(0), g), batch(params, x, y, "mean"))
    # g_i is the same under either reduction (a batch of one), so sum_i g_i is the
    # gradient of the summed loss.
    _assert_tree_close(jax.tree.map(lambda a: a.sum(0), g), batch(params, x, y, "sum"))


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
    g = jax.tree.map(np.asarray, pe.grads(loss_fn, params, x, y))
    norms = _flat_norms(g)
    c = float(np.median(norms))
    for i in (0, 1):  # one example: the result is that example's clipped gradient
        one = pe.clip_and_average(
            loss_fn, params, x[i : i + 1], y[i : i + 1], clip_norm=c, method=method
        )
        got_norm = np.sqrt(sum(np.sum(np.square(a)) for a in jax.tree.leaves(one)))
        np.testing.assert_allclose(got_norm, min(norms[i], c), rtol=1e-5)
    got = pe.clip_and_average(loss_fn, params, x, y, clip_norm=c, method=method)
    scale = np.minimum(1.0, c / norms).astype(np.float32)
    _assert_tree_close(got, jax.tree.map(lambda a: np.tensordot(scale, a, axes=1) / N, g))
    big = pe.clip_and_average(loss_fn, params, x, y, clip_norm=1e9, method=method)
    _assert_tree_close(big, jax.tree.map(lambda a: a.mean(0), g))


def test_clip_noise_has_standard_deviation_sigma_c_over_n():
    model = fnet.serial(fnet.Dense(50))
    (params,) = _init(model, (-1, 40))
    x = np.random.default_rng(1).standard_normal((4, 40)).astype(np.float32)
    y = np.arange(4, dtype=np.int32)
    loss_fn = pe.model_loss(model, softmax_cross_entropy)
    clean = pe.clip_and_average(loss_fn, params, x, y, clip_norm=0.5)
    noisy = pe.clip_and_average(
        loss_fn, params, x, y, clip_norm=0.5, noise_multiplier=2.0, noise_key=jax.random.key(9)
    )
    diff = (np.asarray(noisy["dense_0"]["w"]) - np.asarray(clean["dense_0"]["w"])).ravel()
    assert abs(diff.std() * 4 / (2.0 * 0.5) - 1) < 0.05  # 2000 draws
    with pytest.raises(ValueError, match="noise_key"):
        pe.clip_and_average(loss_fn, params, x, y, clip_norm=0.5, noise_multiplier=1.0)


def test_clipped_gradient_fn_is_a_train_step_gradient():
    loss_fn, params, x, y = _mlp_case()
    grad_fn = pe.clipped_gradient_fn(loss_fn, clip_norm=1e9)
    _assert_tree_close(
        jax.jit(grad_fn)(params, x, y, jax.random.key(0)), jax.jit(jax.grad(loss_fn))(params, x, y)
    )


def _batchnorm_case():
    model = fnet.serial(fnet.Dense(5), fnet.BatchNorm(), fnet.Relu(), fnet.Dense(3))
    (params, _) = _init(model, (-1, 4))
    state = {  # running statistics away from their initial values
        "batchnorm_0": {
            "mean": np.full((5,), 0.3, np.float32),
            "var": np.full((5,), 2.0, np.float32),
        }
    }
    return model, params, state, *_data((4,))


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


def test_an_objective_from_fnet_train_gives_the_same_per_example_grads_and_norms():
    loss_fn, params, x, y = _mlp_case()
    objective = fnet.train.supervised(loss_fn.model, softmax_cross_entropy)
    assert pe.from_objective(objective) == loss_fn  # the model stays visible
    assert pe.uses_dense_trick(objective, params, x, y)
    want = jax.tree.map(np.asarray, pe.grads(loss_fn, params, x, y, method="vmap"))
    got = pe.grads(objective, params, x, y, method="vmap")  # (params, state, x, y, key, *, train)
    _assert_tree_close(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        pe.norms(objective, params, x, y, chunk_size=4), _flat_norms(want), rtol=1e-5
    )


def test_an_objective_with_a_penalty_adds_the_penalty_gradient_to_every_example():
    loss_fn, params, x, y = _mlp_case()
    penalty = lambda p: 0.5 * fnet.regularizers.l2(p)
    objective = fnet.train.supervised(loss_fn.model, softmax_cross_entropy, penalty=penalty)
    assert isinstance(pe.from_objective(objective), pe.ObjectiveLoss)
    assert not pe.uses_dense_trick(objective, params, x, y)
    plain = pe.grads(loss_fn, params, x, y, method="vmap")
    extra = jax.grad(penalty)(params)
    want = jax.tree.map(lambda g, e: np.asarray(g) + np.asarray(e)[None], plain, extra)
    _assert_tree_close(pe.grads(objective, params, x, y), want, rtol=1e-6, atol=1e-7)


def test_a_hand_written_objective_is_recognised_by_its_signature():
    loss_fn, params, x, y = _mlp_case()

    def objective(params, state, x, y, key, *, train=True):
        loss = loss_fn(params, x, y)
        return loss, (state, {"loss": loss})

    want = pe.grads(loss_fn, params, x, y, method="vmap")
    _assert_tree_close(pe.grads(objective, params, x, y), want, rtol=1e-6, atol=1e-7)


def test_from_objective_train_true_uses_per_example_dropout_keys_like_model_loss():
    loss_fn, params, x, y = _mlp_case(0.5)
    objective = fnet.train.supervised(loss_fn.model, softmax_cross_entropy)
    key = jax.random.key(4)
    want = pe.grads(loss_fn, params, x, y, key=key, method="vmap")
    got = pe.grads(pe.from_objective(objective, train=True), params, x, y, key=key)
    _assert_tree_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1, got 0"),
        ({"chunk_size": True}, TypeError, "chunk_size must be None or an int >= 1, got True"),
        ({"chunk_size": 2.0}, TypeError, "chunk_size must be None or an int >= 1"),
    ],
)
def test_norms_reject_a_chunk_size_that_is_not_a_positive_int(kwargs, error, match):
    loss_fn, params, x, y = _mlp_case()
    with pytest.raises(error, match=match):
        pe.norms(loss_fn, params, x, y, **kwargs)
