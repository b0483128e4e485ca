"""fnet.per_example.stats and the sampling formulas: checked against known answers and
Monte-Carlo estimates."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import per_example as pe
from fnet.losses import softmax_cross_entropy

N = 12


def _linear_loss(p, x, y):
    """l_i = theta . x_i + 0.5 theta^T A theta: g_i = x_i + A theta, H = A (known answers)."""
    del y
    a = jnp.diag(jnp.arange(1.0, 4.0, dtype=jnp.float32))
    quad = 0.5 * p["theta"] @ (a @ p["theta"])
    return jnp.mean(x @ p["theta"]) + quad


@functools.cache
def _points():
    x = np.random.default_rng(0).standard_normal((N, 3)).astype(np.float32)
    return x + np.array([[1.0, -2.0, 0.5]], np.float32), np.zeros((N,), np.int32)


def test_stats_match_the_closed_form_on_a_quadratic():
    x, y = _points()
    theta = np.array([0.1, -0.2, 0.3], np.float32)
    s = pe.stats(
        _linear_loss,
        {"theta": theta},
        x,
        y,
        chunk_size=5,
        hessian_examples=N,
        hessian_key=jax.random.key(1),
    )
    a = np.diag([1.0, 2.0, 3.0])
    g = np.asarray(x, np.float64) + a @ np.asarray(theta, np.float64)
    big_g = g.mean(0)
    cov = (g - big_g).T @ (g - big_g) / N  # population normalisation
    np.testing.assert_allclose(s.grad["theta"], big_g, rtol=1e-5)
    np.testing.assert_allclose(s.trace_cov, np.trace(cov), rtol=1e-4)
    np.testing.assert_allclose(s.b_simple, np.trace(cov) / (big_g @ big_g), rtol=1e-4)
    np.testing.assert_allclose(s.trace_h_cov, np.trace(a @ cov), rtol=1e-4)
    np.testing.assert_allclose(s.b_noise, np.trace(a @ cov) / (big_g @ a @ big_g), rtol=1e-4)
    np.testing.assert_allclose(s.sq_norms, (g**2).sum(1), rtol=1e-5)
    assert s.n == N and s.method == "vmap"


@functools.cache
def _mlp():
    model = fnet.models.mlp([6], 3, "tanh")
    _, params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), (-1, 4))
    x = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    y = np.arange(40, dtype=np.int32) % 3
    return pe.model_loss(model, softmax_cross_entropy), params, x, y


def test_dense_and_vmap_paths_give_the_same_stats():
    loss_fn, params, x, y = _mlp()
    d = pe.stats(loss_fn, params, x, y, method="dense", chunk_size=16)
    v = pe.stats(loss_fn, params, x, y, method="vmap", chunk_size=7)
    assert (d.method, v.method) == ("dense", "vmap")
    for name in ("grad_sq_norm", "mean_sq_norm", "trace_cov", "b_simple"):
        np.testing.assert_allclose(getattr(d, name), getattr(v, name), rtol=1e-4, err_msg=name)
    batch = jax.jit(jax.grad(loss_fn))(params, x, y)
    chex.assert_trees_all_close(d.grad, batch, rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("sampling", ["with_replacement", "without_replacement", "poisson"])
def test_predicted_minibatch_variance_matches_monte_carlo(sampling):
    x, y = _points()
    params = {"theta": np.array([0.1, -0.2, 0.3], np.float32)}
    s = pe.stats(_linear_loss, params, x, y)
    g = pe.grads(_linear_loss, params, x, y)["theta"]  # (N, 3)
    reps = 20000
    keys = jax.random.split(jax.random.key(2), reps)

    @functools.partial(jax.jit, static_argnums=0)
    def sampled(b, keys):
        idx, w = jax.vmap(lambda k: pe.sample_batch(k, N, b, sampling))(keys)
        g_hat = jnp.einsum("rb,rbd->rd", w, g[idx])
        return g_hat, jnp.sum(jnp.square(g_hat - s.grad["theta"][None, :]), axis=1)

    for b in (1, 5):
        g_hat, err = sampled(b, keys)
        err, g_hat = np.asarray(err), np.asarray(g_hat)
        mc, se = float(err.mean()), float(err.std()) / reps**0.5
        want = float(s.minibatch_variance(b, sampling))
        assert abs(mc - want) < 4 * se + 1e-6, (b, mc, want, se)
        np.testing.assert_allclose(g_hat.mean(0), s.grad["theta"], atol=6 * se**0.5)


def test_without_replacement_at_full_batch_has_zero_variance():
    x, y = _points()
    params = {"theta": np.zeros((3,), np.float32)}
    s = pe.stats(_linear_loss, params, x, y)
    assert float(s.minibatch_variance(N, "without_replacement")) == 0.0
    assert float(s.expected_cosine(N, "without_replacement")) == 1.0
    g = pe.grads(_linear_loss, params, x, y)["theta"]
    idx, w = pe.sample_batch(jax.random.key(0), N, N, "without_replacement")
    np.testing.assert_allclose(
        np.asarray(w) @ np.asarray(g)[np.asarray(idx)], s.grad["theta"], atol=1e-6
    )
    assert float(s.minibatch_variance(N, "with_replacement")) > 0


def test_poisson_sampling_includes_each_example_with_probability_b_over_n():
    idx, w = jax.vmap(lambda k: pe.sample_batch(k, N, 3, "poisson"))(
        jax.random.split(jax.random.key(0), 4000)
    )
    assert idx.shape == (4000, N)
    w = np.asarray(w)
    assert abs(float(np.mean(np.sum(w > 0, axis=1))) - 3.0) < 0.1
    np.testing.assert_allclose(np.unique(w), [0.0, 1 / 3], rtol=1e-6)


def test_expected_cosine_grows_with_batch_size_and_variance_is_trace_over_b():
    loss_fn, params, x, y = _mlp()
    s = pe.stats(loss_fn, params, x, y)
    cos = [float(s.expected_cosine(b, "with_replacement")) for b in (1, 4, 16)]
    assert 0 < cos[0] < cos[1] < cos[2] < 1
    np.testing.assert_allclose(
        s.minibatch_variance(4, "with_replacement"), s.trace_cov / 4, rtol=1e-6
    )
    with pytest.raises(ValueError, match="sampling"):
        s.minibatch_variance(4, "bootstrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds"):
        s.minibatch_variance(41, "without_replacement")


def test_tracker_records_every_k_epochs():
    loss_fn, params, x, y = _mlp()
    hook = pe.tracker(loss_fn, x, y, every=2, batch_sizes=(4,))
    for epoch in range(5):
        hook(epoch, params, {})
    assert [r["epoch"] for r in hook.history] == [0, 2, 4]
    row = hook.history[0]
    assert row["b_simple"] > 0 and 0 < row["cosine_b4"] < 1 and row["variance_b4"] > 0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f, p, x, y: pe.stats(f, p, x, y, hessian_examples=-1), ValueError,
         "hessian_examples must be >= 0, got -1"),
        (lambda f, p, x, y: pe.stats(f, p, x, y, hessian_batch=0), ValueError,
         "hessian_batch must be >= 1, got 0"),
        (lambda f, p, x, y: pe.stats(f, p, x, y, chunk_size=-4), ValueError,
         "chunk_size must be >= 1, got -4"),
        (lambda f, p, x, y: pe.tracker(f, x, y, every=True), TypeError,
         "tracker: every must be an int >= 1, got True"),
        (lambda f, p, x, y: pe.tracker(f, x, y, batch_sizes=(0,)), ValueError,
         "tracker: batch_sizes must be >= 1, got 0"),
        (lambda f, p, x, y: pe.tracker(f, x, y, sampling="bootstrap"), ValueError,
         "sampling must be one of"),
    ],
)  # fmt: skip
def test_stats_and_tracker_reject_bad_sizes_before_computing(call, error, match):
    loss_fn, params, x, y = _mlp()
    with pytest.raises(error, match=match):
        call(loss_fn, params, x, y)


@functools.cache
def _shifted_linear_regression(n=37, d_in=5, d_out=2):
    """A Dense layer at zero params on features with mean 1e4 and std 1 (float32), targets
    1 + 1e-5 noise: every g_i is ~1e4 per entry with a spread of ~1, so |G|^2 ~ 1e9 and
    tr(Sigma) ~ 10. Returns the loss, params, data and the float64 tr(Sigma)."""
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((n, d_in))).astype(np.float32)
    t = (1.0 + 1e-5 * rng.standard_normal((n, d_out))).astype(np.float32)
    model = fnet.serial(fnet.Dense(d_out))
    _, params = model.init(jax.random.key(0), (-1, d_in))
    params = jax.tree.map(jnp.zeros_like, params)
    # mean_squared_error of one example at output 0: delta_i = -2 t_i / d_out.
    delta = -2.0 * t.astype(np.float64) / d_out
    g_w = np.einsum("ni,no->nio", x.astype(np.float64), delta).reshape(n, -1)
    g = np.concatenate([g_w, delta], axis=1)
    trace = float(np.mean(np.sum(np.square(g - g.mean(0)), axis=1)))
    return pe.model_loss(model, fnet.losses.mean_squared_error), params, x, t, trace, g


@pytest.mark.parametrize("method", ["vmap", "dense"])
@pytest.mark.parametrize("chunk_size", [8, 37, 1])  # 4 chunks + a tail of 5; one; 37
def test_trace_cov_is_accurate_when_the_gradients_share_a_large_mean(method, chunk_size):
    loss_fn, params, x, t, trace, g = _shifted_linear_regression()
    s = pe.stats(loss_fn, params, x, t, method=method, chunk_size=chunk_size)
    assert s.method == method
    assert float(np.mean(np.sum(g**2, axis=1))) / trace > 1e8  # the one-pass formula's loss
    np.testing.assert_allclose(float(s.trace_cov), trace, rtol=1e-3)
    np.testing.assert_allclose(float(s.b_simple), trace / np.sum(g.mean(0) ** 2), rtol=1e-3)
    np.testing.assert_allclose(s.sq_norms, np.sum(g**2, axis=1), rtol=1e-5)


def test_trace_h_cov_is_accurate_when_the_gradients_share_a_large_mean():
    x, y = _points()
    x = x + np.float32(1e4)  # g_i = x_i + A theta: |G|^2 ~ 3e8, tr(Sigma) ~ 3
    theta = np.array([0.1, -0.2, 0.3], np.float32)
    s = pe.stats(
        _linear_loss, {"theta": theta}, x, y, chunk_size=5, hessian_examples=N,
        hessian_key=jax.random.key(1),
    )  # fmt: skip
    a = np.diag([1.0, 2.0, 3.0])
    g = np.asarray(x, np.float64) + a @ np.asarray(theta, np.float64)
    cov = (g - g.mean(0)).T @ (g - g.mean(0)) / N
    np.testing.assert_allclose(s.trace_cov, np.trace(cov), rtol=1e-3)
    np.testing.assert_allclose(s.trace_h_cov, np.trace(a @ cov), rtol=1e-3)


@pytest.mark.parametrize("chunk_size", [8, 37])
def test_trace_cov_with_a_large_mean_is_accurate_when_small_chunks_use_gram_matrices(chunk_size):
    # 64 -> 16 features: a chunk of 8 takes |C|^2 from the (8, 8) Gram matrices
    # (8^2 * 80 <= 8 * 64 * 16), a chunk of 37 from C itself; both must stay accurate.
    loss_fn, params, x, t, trace, g = _shifted_linear_regression(d_in=64, d_out=16)
    s = pe.stats(loss_fn, params, x, t, method="dense", chunk_size=chunk_size)
    np.testing.assert_allclose(float(s.trace_cov), trace, rtol=1e-3)
    np.testing.assert_allclose(s.sq_norms, np.sum(g**2, axis=1), rtol=1e-5)


def test_squared_frobenius_norm_from_gram_matrices_equals_the_direct_one():
    from fnet.per_example.dense_trick import _sq_frobenius

    rng = np.random.default_rng(3)
    for n, d_in, d_out in [(4, 30, 20), (50, 6, 3)]:  # the Gram branch, then the direct one
        a, d = rng.standard_normal((n, d_in)), rng.standard_normal((n, d_out))
        want = np.sum((a.T @ d) ** 2)
        got = _sq_frobenius(jnp.asarray(a), jnp.asarray(d), jnp.asarray(a.T @ d))  # float64
        np.testing.assert_allclose(float(got), want, rtol=1e-12)
