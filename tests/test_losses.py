"""Tests of fnet.losses: values, stability, dtypes, reductions, vmap/jit, gradients, errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import losses
from fnet.errors import LabelError, ShapeError
from fnet.gradcheck import check_grad
from fnet.validation import check_labels

LOGITS = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
IDS = np.array([0, 1, 2])


def _reference_ce(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[y] in float64 NumPy, straight from the definition."""
    logits = np.asarray(logits, np.float64)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(ids)), ids])


def _reference_hinge(scores: np.ndarray, ids: np.ndarray, delta: float) -> np.ndarray:
    """sum_{j != y} max(0, s_j - s_y + delta) with an explicit loop."""
    out = []
    for s, y in zip(scores, ids, strict=True):
        out.append(sum(max(0.0, s[j] - s[y] + delta) for j in range(len(s)) if j != y))
    return np.array(out)


# --------------------------------------------------------------------- values


def test_softmax_cross_entropy_matches_definition_for_ids_and_one_hot(maybe_jit):
    ce = maybe_jit(losses.softmax_cross_entropy, static_argnames="reduction")
    expected = _reference_ce(LOGITS, IDS)
    one_hot = np.eye(3)[IDS]
    chex.assert_trees_all_close(ce(LOGITS, IDS, reduction="none"), expected, rtol=1e-12)
    chex.assert_trees_all_close(ce(LOGITS, one_hot, reduction="none"), expected, rtol=1e-12)
    chex.assert_trees_all_close(ce(LOGITS, IDS), expected.mean(), rtol=1e-12)
    chex.assert_trees_all_close(ce(LOGITS, IDS, reduction="sum"), expected.sum(), rtol=1e-12)


def test_softmax_cross_entropy_with_soft_labels_is_expected_negative_log_prob():
    probs = np.array([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]])
    logp = np.log(np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True))
    got = losses.softmax_cross_entropy(LOGITS, probs, reduction="none")
    chex.assert_trees_all_close(got, -(probs * logp).sum(1), rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_softmax_cross_entropy_is_finite_and_exact_for_logits_of_1e4(maybe_jit, dtype):
    ce = maybe_jit(losses.softmax_cross_entropy, static_argnames="reduction")
    logits = jnp.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype)
    labels = jnp.array([0, 1, 2])
    got = ce(logits, labels, reduction="none")
    # exact values: log(1 + e^-1e4 + e^-2e4) = 0, 2e4, log 3
    chex.assert_trees_all_close(got, jnp.array([0.0, 2e4, np.log(3.0)], dtype), rtol=1e-6)
    grads = jax.grad(lambda z: ce(z, labels))(logits)
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_multiclass_hinge_matches_definition_for_several_margins(maybe_jit):
    hinge = maybe_jit(losses.multiclass_hinge, static_argnames="reduction")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 5))
    ids = rng.integers(0, 5, size=7)
    for delta in (0.0, 0.5, 1.0, 3.0):
        got = hinge(scores, ids, delta, reduction="none")
        chex.assert_trees_all_close(got, _reference_hinge(scores, ids, delta), rtol=1e-12)


def test_binary_logistic_is_softplus_of_minus_y_s_and_finite_at_extremes(maybe_jit):
    bl = maybe_jit(losses.binary_logistic, static_argnames="reduction")
    s = jnp.array([-2.0, 0.0, 3.0, 1e4, -1e4, 1e4])
    y = jnp.array([1, -1, 1, 1, 1, -1])
    got = bl(s, y, reduction="none")
    expected = np.log1p(np.exp(-np.array([-2.0, 0.0, 3.0]) * np.array([1, -1, 1])))
    chex.assert_trees_all_close(got[:3], expected, rtol=1e-12)
    chex.assert_trees_all_close(got[3:], jnp.array([0.0, 1e4, 1e4]), rtol=1e-12)


def test_two_class_softmax_on_plus_minus_s_equals_logistic_loss_on_2s():
    """Softmax over the scores (+t, -t) (SEEDS §2 binary case): P(y|x) = sigmoid(2 y t), so
    its cross-entropy with class 0 <-> y=+1, class 1 <-> y=-1 is binary_logistic(2t, y)."""
    t = jnp.array([-3.0, -0.4, 0.0, 0.7, 2.5])
    y = jnp.array([1, -1, 1, 1, -1])
    logits = jnp.stack([t, -t], axis=-1)
    class_ids = (1 - y) // 2
    ce = losses.softmax_cross_entropy(logits, class_ids, reduction="none")
    chex.assert_trees_all_close(ce, losses.binary_logistic(2 * t, y, reduction="none"), rtol=1e-12)
    # And it is NOT the logistic loss on t itself (the factor 2 matters).
    assert not np.allclose(ce, losses.binary_logistic(t, y, reduction="none"))


def test_mean_squared_error_is_mean_over_entries_without_one_half(maybe_jit):
    mse = maybe_jit(losses.mean_squared_error, static_argnames="reduction")
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    chex.assert_trees_all_close(mse(p, t, reduction="none"), jnp.array([0.5, 10.0]))
    chex.assert_trees_all_close(mse(p, t), jnp.asarray(5.25))
    chex.assert_trees_all_close(mse(p, t, reduction="sum"), jnp.asarray(10.5))
    assert mse(p[:, 0], t[:, 0]).shape == ()


# --------------------------------------------------------------------- out-of-range ids


def test_out_of_range_ids_give_exactly_zero_loss_and_gradient_under_jit():
    """Documented behaviour: the one-hot of an id outside [0, C) (negative ones included)
    is all zeros, so that example's loss and gradient are exactly 0; the mean still
    divides by N. fnet.validation.check_labels catches such ids eagerly."""
    labels = jnp.array([0, 3, -1])
    for loss in (losses.softmax_cross_entropy, losses.multiclass_hinge):
        per_example = jax.jit(lambda s, y, loss=loss: loss(s, y, reduction="none"))(LOGITS, labels)
        assert per_example[0] > 0
        np.testing.assert_array_equal(per_example[1:], [0.0, 0.0])
        mean = jax.jit(loss)(LOGITS, labels)
        chex.assert_trees_all_close(mean, per_example[0] / 3)
        grads = jax.jit(jax.grad(loss))(LOGITS, labels)
        np.testing.assert_array_equal(grads[1:], 0.0)
        assert bool(jnp.all(jnp.isfinite(per_example)))
    with pytest.raises(LabelError, match="outside"):
        check_labels(np.asarray(labels), 3)


@pytest.mark.parametrize(
    ("n_classes", "error", "match"),
    [
        (True, TypeError, r"n_classes must be an int >= 1, got True of type bool"),
        (3.0, TypeError, r"n_classes must be an int >= 1, got 3.0 of type float"),
        (0, ValueError, r"n_classes must be >= 1, got 0"),
    ],
)
def test_check_labels_rejects_a_bad_class_count(n_classes, error, match):
    with pytest.raises(error, match=match):
        check_labels(np.asarray([0, 1]), n_classes)


# --------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    ("loss", "x", "y"),
    [
        (losses.softmax_cross_entropy, LOGITS, IDS),
        (losses.softmax_cross_entropy, LOGITS, np.eye(3)[IDS]),  # float64 labels
        (losses.multiclass_hinge, LOGITS, IDS),
        (losses.binary_logistic, LOGITS[:, 0], np.array([1.0, -1.0, 1.0])),
        (losses.mean_squared_error, LOGITS, np.ones((3, 3))),
    ],
)
def test_float32_in_gives_float32_out_with_x64_enabled(loss, x, y):
    assert jax.config.jax_enable_x64
    x32 = jnp.asarray(x, jnp.float32)
    for reduction in ("mean", "sum", "none"):
        assert loss(x32, y, reduction=reduction).dtype == jnp.float32
    assert jax.jit(jax.grad(lambda z: loss(z, y)))(x32).dtype == jnp.float32


def test_hinge_margin_given_as_python_float_keeps_float32():
    out = losses.multiclass_hinge(jnp.asarray(LOGITS, jnp.float32), IDS, 2.5)
    assert out.dtype == jnp.float32


# --------------------------------------------------------------------- vmap / per example


@pytest.mark.parametrize(
    ("batched", "per_example", "x", "y"),
    [
        (losses.softmax_cross_entropy, losses.softmax_cross_entropy_per_example, LOGITS, IDS),
        (
            losses.softmax_cross_entropy,
            losses.softmax_cross_entropy_per_example,
            LOGITS,
            np.eye(3)[IDS] * 0.8 + 0.2 / 3,
        ),
        (losses.multiclass_hinge, losses.multiclass_hinge_per_example, LOGITS, IDS),
        (
            losses.binary_logistic,
            losses.binary_logistic_per_example,
            LOGITS[:, 1],
            np.array([1, -1, -1]),
        ),
        (
            losses.mean_squared_error,
            losses.mean_squared_error_per_example,
            LOGITS.reshape(3, 3, 1),
            np.zeros((3, 3, 1)),
        ),
    ],
)
def test_vmapped_per_example_form_equals_batched_none_reduction(
    maybe_jit, batched, per_example, x, y
):
    vmapped = maybe_jit(jax.vmap(per_example))
    expected = batched(x, y, reduction="none")
    chex.assert_shape(expected, (3,))
    chex.assert_trees_all_close(vmapped(x, y), expected, rtol=1e-12)


def test_per_example_gradients_via_vmap_of_grad_match_rows_of_batched_gradient():
    w = jnp.array(np.random.default_rng(1).normal(size=(4, 3)))
    x = jnp.array(np.random.default_rng(2).normal(size=(5, 4)))
    y = jnp.array([0, 2, 1, 1, 0])

    def one(w, xi, yi):
        return losses.softmax_cross_entropy_per_example(xi @ w, yi)

    per_ex = jax.jit(jax.vmap(jax.grad(one), in_axes=(None, 0, 0)))(w, x, y)
    total = jax.grad(lambda w: losses.softmax_cross_entropy(x @ w, y, reduction="sum"))(w)
    chex.assert_trees_all_close(per_ex.sum(0), total, rtol=1e-12)


# --------------------------------------------------------------------- gradients


def _small_random(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def test_softmax_cross_entropy_passes_gradcheck_for_ids_and_soft_labels_mean_and_sum():
    # One check, four leaves: the report gives each combination its own error.
    ids = np.array([0, 1, 2, 3, 0, 1])
    soft = np.random.default_rng(1).dirichlet(np.ones(4), size=6)
    x = {
        k: _small_random(i, (6, 4))
        for i, k in enumerate(["ids_mean", "ids_sum", "soft_mean", "soft_sum"])
    }

    def f(z):
        ce = losses.softmax_cross_entropy
        return (
            ce(z["ids_mean"], ids)
            + ce(z["ids_sum"], ids, reduction="sum")
            + ce(z["soft_mean"], soft)
            + ce(z["soft_sum"], soft, reduction="sum")
        )

    report = check_grad(f, x)
    assert report.passed, report
    assert len(report.errors) == 4 and report.max_rel_error < 1e-6


def test_multiclass_hinge_passes_gradcheck_away_from_kinks():
    # Scores on a grid of 0.3 with Delta = 1.05 = 3 * 0.3 + 0.15 keep every s_j - s_y + Delta
    # at least 0.15 away from the kink at 0, far beyond the finite-difference step (~6e-6).
    rng = np.random.default_rng(3)
    scores = rng.integers(-5, 6, size=(6, 4)) * 0.3
    ids = rng.integers(0, 4, size=6)
    margins = scores - scores[np.arange(6), ids][:, None] + 1.05
    assert np.min(np.abs(margins)) >= 0.149
    assert np.any(margins > 0) and np.any(margins < 0)  # both sides of the hinge are used
    report = check_grad(lambda s: losses.multiclass_hinge(s, ids, 1.05), scores)
    assert report.passed, report


def test_binary_logistic_and_mse_pass_gradcheck():
    y = np.where(np.random.default_rng(5).random(8) > 0.5, 1, -1)
    t = _small_random(7, (5, 3))
    x = {"logistic": _small_random(4, (8,)), "mse": _small_random(6, (5, 3))}

    def f(z):
        return losses.binary_logistic(z["logistic"], y) + losses.mean_squared_error(z["mse"], t)

    report = check_grad(f, x)
    assert report.passed, report
    assert set(report.errors) == {"logistic", "mse"}


def test_gradients_of_losses_with_respect_to_a_linear_model_pass_gradcheck():
    params = {"dense_0": {"w": _small_random(8, (4, 3)), "b": _small_random(9, (3,))}}
    x = _small_random(10, (6, 4))
    y = np.array([0, 1, 2, 2, 1, 0])

    def objective(p):
        scores = x @ p["dense_0"]["w"] + p["dense_0"]["b"][None, :]
        return losses.softmax_cross_entropy(scores, y) + losses.mean_squared_error(
            scores, jax.nn.one_hot(y, 3, dtype=scores.dtype)
        )

    report = check_grad(objective, params)
    assert report.passed, report
    assert set(report.errors) == {"dense_0/w", "dense_0/b"}


# --------------------------------------------------------------------- static checks


def test_logits_of_wrong_rank_raise_shape_error():
    with pytest.raises(ShapeError, match=r"\(N, C\).*\(3,\)"):
        losses.softmax_cross_entropy(jnp.zeros(3), jnp.array([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"\(C,\)"):
        losses.softmax_cross_entropy_per_example(jnp.zeros((2, 3)), jnp.array(0))


def test_batch_size_mismatch_raises_shape_error_naming_both_sizes():
    with pytest.raises(ShapeError, match=r"3 examples.*\(2,\)"):
        losses.softmax_cross_entropy(LOGITS, np.array([0, 1]))
    with pytest.raises(ShapeError, match="batch size mismatch"):
        losses.multiclass_hinge(LOGITS, np.array([0, 1, 2, 0]))
    with pytest.raises(ShapeError, match="batch size mismatch"):
        losses.mean_squared_error(jnp.zeros((3, 2)), jnp.zeros((4, 2)))


def test_float_class_ids_raise_label_error_suggesting_an_integer_cast():
    with pytest.raises(LabelError, match=r"astype\(jnp.int32\)"):
        losses.softmax_cross_entropy(LOGITS, np.array([0.0, 1.0, 2.0]))


def test_integer_one_hot_labels_raise_label_error_suggesting_argmax():
    with pytest.raises(LabelError, match=r"argmax"):
        losses.softmax_cross_entropy(LOGITS, np.eye(3, dtype=np.int32))


def test_float_labels_of_wrong_width_raise_label_error():
    with pytest.raises(LabelError, match=r"\(N, C\) = \(3, 3\).*\(3, 4\)"):
        losses.softmax_cross_entropy(LOGITS, np.zeros((3, 4)))


def test_integer_logits_and_bool_labels_are_rejected():
    with pytest.raises(TypeError, match="floating dtype"):
        losses.softmax_cross_entropy(np.ones((3, 3), np.int32), IDS)
    with pytest.raises(LabelError, match="dtype bool"):
        losses.multiclass_hinge(LOGITS, np.array([True, False, True]))


def test_binary_logistic_rejects_column_scores_with_a_hint():
    with pytest.raises(ShapeError, match=r"scores\[:, 0\]"):
        losses.binary_logistic(jnp.zeros((3, 1)), jnp.array([1, -1, 1]))


def test_mse_refuses_to_broadcast():
    with pytest.raises(ShapeError, match="does not broadcast"):
        losses.mean_squared_error(jnp.zeros((3, 2)), jnp.zeros((3, 1)))


def test_unknown_reduction_raises_value_error():
    with pytest.raises(ValueError, match="reduction"):
        losses.softmax_cross_entropy(LOGITS, IDS, reduction="avg")  # type: ignore[arg-type]


def test_static_checks_run_at_trace_time_under_jit():
    with pytest.raises(ShapeError):
        jax.jit(losses.softmax_cross_entropy)(LOGITS, np.array([0, 1]))
