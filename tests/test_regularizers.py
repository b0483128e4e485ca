"""Tests of fnet.regularizers: which leaves are penalised, values, dtypes, gradients."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import losses, regularizers
from fnet.gradcheck import check_grad


def _params(dtype=jnp.float64) -> dict:
    rng = np.random.default_rng(0)
    return {
        "conv_0": {
            "w": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), dtype),
            "b": jnp.asarray(rng.normal(size=(4,)), dtype),
        },
        "batchnorm_0": {"scale": jnp.ones(4, dtype), "offset": jnp.full(4, 0.5, dtype)},
        "dense_0": {
            "w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
            "b": jnp.asarray(rng.normal(size=(3,)), dtype),
        },
    }


def test_l2_sums_squares_of_weights_only_without_one_half(maybe_jit):
    p = _params()
    expected = np.sum(np.square(p["conv_0"]["w"])) + np.sum(np.square(p["dense_0"]["w"]))
    chex.assert_trees_all_close(maybe_jit(regularizers.l2)(p), expected, rtol=1e-12)


def test_l1_sums_absolute_values_of_weights_only(maybe_jit):
    p = _params()
    expected = np.sum(np.abs(p["conv_0"]["w"])) + np.sum(np.abs(p["dense_0"]["w"]))
    chex.assert_trees_all_close(maybe_jit(regularizers.l1)(p), expected, rtol=1e-12)


def test_biases_and_norm_parameters_get_zero_gradient_from_l2():
    p = _params()
    g = jax.grad(regularizers.l2)(p)
    for name in ("conv_0", "dense_0"):
        chex.assert_trees_all_close(g[name]["w"], 2 * p[name]["w"])
        np.testing.assert_array_equal(g[name]["b"], 0.0)
    np.testing.assert_array_equal(g["batchnorm_0"]["scale"], 0.0)
    np.testing.assert_array_equal(g["batchnorm_0"]["offset"], 0.0)


def test_include_by_leaf_names_selects_those_leaves():
    p = _params()
    got = regularizers.l2(p, include=("w", "b"))
    expected = sum(np.sum(np.square(p[n][k])) for n in ("conv_0", "dense_0") for k in "wb")
    chex.assert_trees_all_close(got, expected, rtol=1e-12)
    assert regularizers.l2(p, include="scale") == 4.0  # a single name works too


def test_include_predicate_receives_path_string_and_leaf():
    p = _params()
    seen = []

    def only_dense_weights(path: str, leaf) -> bool:
        seen.append((path, leaf.shape))
        return path == "dense_0/w"

    got = regularizers.l2(p, include=only_dense_weights)
    chex.assert_trees_all_close(got, np.sum(np.square(p["dense_0"]["w"])), rtol=1e-12)
    assert ("conv_0/w", (3, 3, 2, 4)) in seen and ("batchnorm_0/offset", (4,)) in seen


def test_selected_leaves_lists_paths_in_pytree_order():
    assert list(regularizers.selected_leaves(_params())) == ["conv_0/w", "dense_0/w"]


def test_include_that_matches_nothing_raises_listing_the_paths():
    with pytest.raises(ValueError, match=r"kernel.*dense_0/w"):
        regularizers.l2(_params(), include=("kernel",))


def test_empty_params_give_zero_penalty():
    assert regularizers.l2({}) == 0.0
    assert regularizers.l1({"flatten_0": {}}) == 0.0


def test_integer_leaf_selected_by_name_raises_type_error():
    with pytest.raises(TypeError, match="floating"):
        regularizers.l2({"w": jnp.arange(3)})


def test_float32_params_give_float32_penalty_with_x64_enabled():
    p = _params(jnp.float32)
    assert regularizers.l2(p).dtype == jnp.float32
    assert regularizers.l1(p).dtype == jnp.float32


def test_composes_with_a_loss_as_in_the_slides_objective():
    p = _params()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 4)))
    y = jnp.array([0, 1, 2, 0, 1])
    lam = 0.1

    def data_loss(p):
        scores = x @ p["dense_0"]["w"] + p["dense_0"]["b"][None, :]
        return losses.softmax_cross_entropy(scores, y)

    g = jax.grad(lambda p: data_loss(p) + lam * regularizers.l2(p))(p)
    g_data = jax.grad(data_loss)(p)
    expected_w = g_data["dense_0"]["w"] + 2 * lam * p["dense_0"]["w"]
    chex.assert_trees_all_close(g["dense_0"]["w"], expected_w)
    chex.assert_trees_all_close(g["dense_0"]["b"], g_data["dense_0"]["b"])
    chex.assert_trees_all_close(g["conv_0"]["w"], 2 * lam * p["conv_0"]["w"])


def test_l2_and_l1_pass_gradcheck():
    p = _params()
    # l1 is smooth away from 0: the random weights are far from 0 relative to the step.
    assert min(float(jnp.min(jnp.abs(w))) for w in regularizers.selected_leaves(p).values()) > 1e-3
    report = check_grad(lambda p: regularizers.l2(p) + 0.5 * regularizers.l1(p), p)
    assert report.passed, report
    assert report.n_checked == 3 * 3 * 2 * 4 + 4 + 4 + 4 + 4 * 3 + 3  # biases etc. too (grad 0)


def test_l2_prefers_spread_out_weights_over_concentrated_ones():
    """SEEDS §3: x = [1,1,1,1]; w1 = [1,0,0,0] and w2 = [.25]*4 give the same score 1,
    but L2 penalises w1 with 1.0 and w2 with 0.25, so it prefers the spread-out w2."""
    x = jnp.ones(4)
    w1 = jnp.array([1.0, 0.0, 0.0, 0.0])
    w2 = jnp.full(4, 0.25)
    assert x @ w1 == x @ w2 == 1.0
    assert regularizers.l2({"w": w1}) == 1.0
    assert regularizers.l2({"w": w2}) == 0.25
