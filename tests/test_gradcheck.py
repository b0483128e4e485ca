"""Tests of fnet.gradcheck: it passes correct gradients, FAILS wrong ones, and is cheap."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import gradcheck, losses, regularizers
from fnet.errors import ShapeError
from fnet.gradcheck import check_grad, check_jacobian, relative_error


def _mlp_params(sizes: list[int], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"dense_{i}": {
            "w": rng.normal(size=(a, b)) * np.sqrt(2.0 / (a + b)),
            "b": 0.1 * rng.normal(size=(b,)),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }


def _mlp_apply(params: dict, x: jax.Array) -> jax.Array:
    n = len(params)
    for i in range(n):
        x = x @ params[f"dense_{i}"]["w"] + params[f"dense_{i}"]["b"][None, :]
        if i < n - 1:
            x = jnp.tanh(x)
    return x


def _mlp_objective(sizes: list[int], n: int = 16, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], size=n)

    def objective(params):
        logits = _mlp_apply(params, x)
        return losses.softmax_cross_entropy(logits, y) + 1e-3 * regularizers.l2(params)

    return objective


@jax.custom_vjp
def _doubled_grad_square(w):
    return w**2


def _dgs_fwd(w):
    return w**2, w


def _dgs_bwd(w, g):
    return (2 * (2 * w * g),)  # deliberately 2x the true gradient 2 w g


_doubled_grad_square.defvjp(_dgs_fwd, _dgs_bwd)


# --------------------------------------------------------------------- passes


def test_whole_model_params_pass_and_every_leaf_is_reported_by_path():
    sizes = [5, 8, 3]
    params = _mlp_params(sizes)
    report = check_grad(_mlp_objective(sizes), params)
    assert report.passed, report
    assert report.max_rel_error < 1e-6
    assert set(report.errors) == {"dense_0/w", "dense_0/b", "dense_1/w", "dense_1/b"}
    assert report.n_checked == 5 * 8 + 8 + 8 * 3 + 3
    assert report.leaves["dense_0/w"].shape == (5, 8)
    assert report.failed == []
    text = str(report)
    assert "PASSED" in text and "dense_1/b" in text and "FAIL" not in text


def test_a_conv_net_of_fnet_layers_passes_with_its_float32_params_checked_in_float64():
    # The layers are another module's: this is the integration check.
    model = fnet.serial(fnet.Conv2D(3, 3), fnet.Tanh(), fnet.Flatten(), fnet.Dense(4))
    _, params = model.init(jax.random.key(0), (-1, 5, 5, 2))
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    # Nonzero biases, so their gradients are generic too.
    params = jax.tree.map(lambda a: a + 0.1 * jnp.ones_like(a), params)
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 2))
    y = np.array([0, 1, 2, 3])

    def objective(p):
        return losses.softmax_cross_entropy(model.apply(p, x), y) + 1e-2 * regularizers.l2(p)

    report = check_grad(objective, params)
    assert report.passed, report
    assert report.n_checked == sum(a.size for a in jax.tree.leaves(params))
    assert "conv2d_0/w" in report.errors and "dense_0/b" in report.errors


def test_integer_leaves_are_passed_through_and_not_checked():
    x = {"w": np.array([0.3, -1.2, 2.0]), "power": np.array(3)}

    def f(t):
        return jnp.sum(t["w"] ** t["power"])

    report = check_grad(f, x)
    assert report.passed, report
    assert list(report.leaves) == ["w"]


def test_inputs_as_bare_array_and_list_pytrees_are_named():
    assert list(check_grad(lambda v: jnp.sum(jnp.sin(v)), np.linspace(-1, 1, 5)).leaves) == ["x"]
    tree = [{"w": np.ones(2)}, {"w": np.full(3, 0.5)}]
    report = check_grad(lambda t: jnp.sum(t[0]["w"] ** 2) * jnp.sum(jnp.exp(t[1]["w"])), tree)
    assert report.passed and list(report.leaves) == ["0/w", "1/w"]


def test_jacobian_of_a_layer_passes_columns_by_differences_rows_by_vjps():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(4, 3))
    x = rng.normal(size=(2, 4))  # a small random input, as the slides recommend
    report = check_jacobian(lambda x: jnp.tanh(x @ w), x)
    assert report.passed, report
    assert report.kind == "jacobian"
    assert report.n_checked == (2 * 3) * (2 * 4)
    assert len(report.leaves["x"].worst_index) == 4  # output index (2) + input index (2)


def test_jacobian_with_respect_to_params_pytree():
    x = np.random.default_rng(3).normal(size=(3, 4))
    params = _mlp_params([4, 5, 2], seed=4)
    report = check_jacobian(lambda p: _mlp_apply(p, x), params)
    assert report.passed, report
    assert report.n_checked == 3 * 2 * (4 * 5 + 5 + 5 * 2 + 2)


# --------------------------------------------------------------------- fails


def test_wrong_custom_gradient_fails_and_names_the_bad_leaf():
    params = {"good": {"w": np.array([0.5, -1.0, 2.0])}, "bad": {"w": np.array([1.5, 0.3])}}

    def f(p):
        return jnp.sum(jnp.sin(p["good"]["w"])) + jnp.sum(_doubled_grad_square(p["bad"]["w"]))

    report = check_grad(f, params)
    assert not report.passed
    assert report.failed == ["bad/w"]
    assert report.errors["good/w"] < 1e-6
    assert report.errors["bad/w"] == pytest.approx(0.5, rel=1e-6)  # |2g - g| / |2g|
    bad = report.leaves["bad/w"]
    assert bad.analytic == pytest.approx(2 * bad.numeric, rel=1e-6)
    text = str(report)
    assert "FAILED (bad/w)" in text and "bad/w  <-- FAIL" in text


def test_wrong_custom_gradient_fails_the_jacobian_check_too():
    report = check_jacobian(lambda w: _doubled_grad_square(w), np.array([0.7, -0.2, 1.1]))
    assert not report.passed
    assert report.max_rel_error == pytest.approx(0.5, rel=1e-6)


def test_a_kink_within_the_step_fails_as_documented():
    # d|x|/dx at 0: JAX says 1, the centred difference says 0.
    report = check_grad(lambda v: jnp.sum(jnp.abs(v)), np.array([0.0, 1.0]))
    assert not report.passed
    assert report.leaves["x"].worst_index == (0,)


def test_nan_gradient_fails_and_the_nan_is_not_hidden_by_later_leaves():
    x = {"a": np.array([0.0, 1.0]), "b": np.array([2.0])}
    report = check_grad(lambda t: jnp.sum(jnp.sqrt(t["a"])) + jnp.sum(t["b"] ** 2), x)
    assert not report.passed
    assert np.isnan(report.max_rel_error) and report.failed == ["a"]


# --------------------------------------------------------------------- error model


def test_default_step_passes_where_the_slides_sqrt_eps_step_does_not():
    """Rounding error ~ eps |f| / h: with h = sqrt(eps) ~ 1.5e-8 it is ~1.5e-8 |f|, above
    1e-6 relative for the small gradient components of a mean loss; the default
    h = eps^(1/3) ~ 6e-6 leaves ~4e-11 |f| (see the module docstring)."""
    sizes = [6, 8, 3]
    objective, params = _mlp_objective(sizes), _mlp_params(sizes)
    default = check_grad(objective, params)
    slides = check_grad(objective, params, step_scale=gradcheck.SLIDES_STEP_SCALE)
    assert default.passed and not slides.passed
    assert slides.max_rel_error > 50 * default.max_rel_error
    assert gradcheck.SLIDES_STEP_SCALE == pytest.approx(1.49e-8, rel=1e-2)
    assert gradcheck.DEFAULT_STEP_SCALE == pytest.approx(6.06e-6, rel=1e-2)


def test_relative_error_uses_the_floor_only_when_both_values_are_below_it():
    a = np.array([1.0, 1e-3, 0.0, 0.0, 2e-9])
    n = np.array([1.0 + 1e-7, 1.1e-3, 0.0, 1e-10, 1e-9])
    got = relative_error(a, n, floor=1e-8)
    np.testing.assert_allclose(got, [1e-7 / (1 + 1e-7), 1e-4 / 1.1e-3, 0.0, 1e-2, 0.1])
    np.testing.assert_allclose(relative_error(a, n)[3], 1.0)  # no floor: plain relative


def test_floor_absorbs_rounding_noise_on_tiny_components_but_not_a_2x_bug_in_them():
    """A component 1e-8 of |f|: rounding noise (~4e-11 |f|) is 4e-3 of it, so the plain
    relative error (floor=0) fails a correct gradient; the default floor compares it
    absolutely and passes it, while a 2x error in that same component still fails."""
    x = np.array([0.3, -0.7, 1.2, 0.5])

    def f(v):
        return 1e3 * jnp.sum(jnp.cos(v[:-1])) + 1e-5 * v[-1] ** 2

    def f_bug(v):
        return 1e3 * jnp.sum(jnp.cos(v[:-1])) + 1e-5 * _doubled_grad_square(v[-1])

    assert not check_grad(f, x, floor=0.0).passed
    assert check_grad(f, x).passed
    bug = check_grad(f_bug, x)
    assert not bug.passed and bug.leaves["x"].worst_index == (3,)


# --------------------------------------------------------------------- options, errors


def test_max_coords_per_leaf_checks_a_reproducible_random_subset():
    sizes = [12, 10, 3]
    objective, params = _mlp_objective(sizes, n=8), _mlp_params(sizes)
    r1 = check_grad(objective, params, max_coords_per_leaf=8, key=jax.random.key(7))
    r2 = check_grad(objective, params, max_coords_per_leaf=8, key=jax.random.PRNGKey(7))
    assert r1.passed, r1
    assert r1.leaves["dense_0/w"].n_checked == 8
    assert r1.leaves["dense_1/b"].n_checked == 3  # smaller leaves are checked in full
    assert r1.n_checked == 8 + 8 + 8 + 3
    assert r1.errors == r2.errors  # same key bits (new-style or legacy key): same subset


def test_f_is_traced_a_fixed_number_of_times_whatever_the_number_of_coordinates():
    """All finite differences run as one compiled computation (``jax.lax.map`` with
    ``batch_size``: vmap in chunks under one jit), not a Python loop: tracing f costs the
    same for 400 or 4,000 coordinates (both have full chunks and an exact tail, which is
    traced once more), and less for 40 (one chunk, no loop)."""

    def traces(n: int) -> int:
        count = 0

        def f(v):
            nonlocal count
            count += 1
            return jnp.sum(jnp.tanh(v) ** 2)

        assert check_grad(f, np.linspace(-2, 2, n)).passed
        return count

    assert traces(40) <= traces(400) == traces(4000) <= 6


def test_a_few_thousand_params_are_all_checked():
    sizes = [30, 80, 10]  # 3,290 parameters (its speed is measured in benchmarks/)
    objective, params = _mlp_objective(sizes), _mlp_params(sizes)
    report = check_grad(objective, params)
    assert report.passed and report.n_checked == 3290


def test_without_x64_a_clear_error_says_how_to_enable_it():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r'jax.config.update\("jax_enable_x64", True\)'):
            check_grad(lambda v: jnp.sum(v**2), np.ones(3))
        with pytest.raises(RuntimeError, match=r"jax.enable_x64\(True\)"):
            check_jacobian(lambda v: v**2, np.ones(3))
        with jax.enable_x64(True):  # the context manager the message suggests works
            assert check_grad(lambda v: jnp.sum(v**2), np.ones(3)).passed


def test_non_scalar_f_raises_shape_error_pointing_to_check_jacobian():
    with pytest.raises(ShapeError, match="check_jacobian"):
        check_grad(lambda v: v**2, np.ones(3))


def test_f_that_computes_in_float32_is_rejected():
    with pytest.raises(TypeError, match="float32"):
        check_grad(lambda v: jnp.sum(v.astype(jnp.float32) ** 2), np.ones(3))


def test_x_without_floating_leaves_is_rejected():
    with pytest.raises(TypeError, match="floating"):
        check_grad(lambda v: jnp.sum(v), np.arange(3))


@pytest.mark.parametrize("check", [check_grad, check_jacobian])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, r"batch_size must be >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, r"batch_size must be an int >= 1, got 2.0"),
        ({"max_coords_per_leaf": 0}, ValueError, r"max_coords_per_leaf must be >= 1, got 0"),
        ({"max_coords_per_leaf": True}, TypeError, r"max_coords_per_leaf must be None or an int"),
    ],
)
def test_bad_batch_size_or_coordinate_count_is_rejected(check, kwargs, error, match):
    with pytest.raises(error, match=match):
        check(lambda v: jnp.sum(v**2), np.ones(3), **kwargs)
