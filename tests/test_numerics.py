"""Numerics and hostile inputs (issue 12 items 1-8; issue 10 pooling and cross-entropy;
issue 11 mixed precision): each named example with its right value or error."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fnet
from fnet import activations, losses, metrics, models
from fnet.errors import LabelError, ShapeError
from fnet.layers import pooling
from fnet.validation import check_labels_for_output

NEG_INF = -jnp.inf
MASKED = jnp.array([[NEG_INF, 1.0, 2.0]])
MASKED_CE = math.log(math.e + math.e**2) - 2.0  # 0.3132617


# ------------------------------------------------- 1. infinite but legal scores


@pytest.mark.parametrize(
    "labels", [jnp.array([2]), jnp.array([[0.0, 0.0, 1.0]])], ids=["ids", "one_hot"]
)
def test_softmax_cross_entropy_with_a_masked_logit_is_finite_with_finite_gradient(labels):
    loss = losses.softmax_cross_entropy(MASKED, labels)
    np.testing.assert_allclose(loss, MASKED_CE, rtol=1e-6)
    grad = jax.grad(lambda s: losses.softmax_cross_entropy(s, labels))(MASKED)
    p = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(grad, [[0.0, p[0], p[1] - 1.0]], rtol=1e-6)


def test_softmax_cross_entropy_per_example_with_a_masked_logit():
    for label in (jnp.array(2), jnp.array([0.0, 0.0, 1.0])):
        got = jax.jit(losses.softmax_cross_entropy_per_example)(MASKED[0], label)
        np.testing.assert_allclose(got, MASKED_CE, rtol=1e-6)
    vmapped = jax.vmap(losses.softmax_cross_entropy_per_example)(MASKED, jnp.array([2]))
    np.testing.assert_allclose(vmapped, [MASKED_CE], rtol=1e-6)


def test_softmax_cross_entropy_selecting_a_masked_class_is_infinite():
    assert losses.softmax_cross_entropy(MASKED, jnp.array([0])) == jnp.inf


@pytest.mark.parametrize(
    "labels", [jnp.array([2]), jnp.array([[0.0, 0.0, 1.0]])], ids=["ids", "one_hot"]
)
def test_multiclass_hinge_ignores_a_masked_wrong_class(labels):
    scores = jnp.array([[NEG_INF, 1.5, 2.0]])
    # Only class 1 contributes: max(0, 1.5 - 2 + 1) = 0.5.
    np.testing.assert_allclose(losses.multiclass_hinge(scores, labels), 0.5)
    grad = jax.grad(lambda s: losses.multiclass_hinge(s, labels))(scores)
    np.testing.assert_allclose(grad, [[0.0, 1.0, -1.0]])
    per_example = losses.multiclass_hinge_per_example(scores[0], labels[0])
    np.testing.assert_allclose(per_example, 0.5)


def test_binary_logistic_at_infinite_scores():
    scores = jnp.array([NEG_INF, jnp.inf])
    labels = jnp.array([-1, 1])
    assert losses.binary_logistic(scores, labels) == 0.0
    grad = jax.grad(lambda s: losses.binary_logistic(s, labels))(scores)
    np.testing.assert_array_equal(grad, [0.0, 0.0])


@pytest.mark.parametrize(
    "layer",
    [fnet.Softmax, fnet.LogSoftmax, fnet.Relu, fnet.Tanh, fnet.Sigmoid, fnet.Elu, fnet.LeakyRelu],
)
def test_activation_layers_give_finite_gradients_at_masked_scores(layer):
    model = layer()
    _, params = model.init(None, (-1, 3))
    y = model.apply(params, MASKED)
    assert not np.any(np.isnan(y))
    weights = jnp.array([[0.3, 0.5, 0.7]])

    def objective(s):
        out = model.apply(params, s)
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0.0) * weights)

    assert np.all(np.isfinite(jax.grad(objective)(MASKED)))


def test_softmax_and_maxout_values_at_masked_scores():
    np.testing.assert_allclose(
        activations.softmax(MASKED), [[0.0, *(np.exp([1, 2]) / np.exp([1, 2]).sum())]], rtol=1e-6
    )
    np.testing.assert_allclose(activations.log_softmax(MASKED)[0, 2], -MASKED_CE, rtol=1e-6)
    x = jnp.array([[NEG_INF, 1.0, NEG_INF, NEG_INF]])
    model = fnet.Maxout(2)
    _, params = model.init(None, (-1, 4))
    np.testing.assert_array_equal(model.apply(params, x), [[1.0, NEG_INF]])
    grad = jax.grad(lambda s: model.apply(params, s)[0, 0])(x)
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 0.0, 0.0]])


# ------------------------------------------------- 2. numerically stable variance


def _offset_feature(n=64, mean=1e4):
    z = np.random.default_rng(0).standard_normal((n, 1))
    z = (z - z.mean()) / z.std()  # exactly mean 0, std 1 before the offset
    return (mean + z).astype(np.float32)


def test_batchnorm_train_normalises_a_feature_of_mean_1e4_and_std_1():
    model = fnet.BatchNorm(momentum=0.0)
    _, params, state = model.init(None, (-1, 1))
    x = _offset_feature()
    y, new_state = model.apply(params, state, x, train=True)
    np.testing.assert_allclose(np.std(np.asarray(y)), 1.0, rtol=1e-2)
    np.testing.assert_allclose(new_state["mean"], [1e4], rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], [1.0], rtol=1e-2)


def test_batchnorm_with_axis_name_is_stable_and_equals_the_batch():
    model = fnet.BatchNorm(momentum=0.0, axis_name="batch")
    _, params, state = model.init(None, (-1, 1))
    x = _offset_feature()
    per_example = jax.vmap(
        lambda xi: model.apply(params, state, xi[None], train=True), axis_name="batch"
    )
    y, new_state = per_example(x)
    np.testing.assert_allclose(np.std(np.asarray(y)), 1.0, rtol=1e-2)
    np.testing.assert_allclose(new_state["var"][0], [1.0], rtol=1e-2)


def test_layernorm_normalises_rows_of_mean_1e4_and_std_1():
    model = fnet.LayerNorm()
    _, params = model.init(None, (-1, 64))
    y = model.apply(params, _offset_feature().T)
    np.testing.assert_allclose(np.std(np.asarray(y)), 1.0, rtol=1e-2)


def test_fit_standardizer_is_stable_for_a_feature_of_mean_1e4_and_std_1():
    from fnet.datasets.preprocessing import fit_standardizer, standardize

    x = _offset_feature()
    stats = fit_standardizer(x)
    np.testing.assert_allclose(stats.std, [[np.std(x.astype(np.float64))]], rtol=1e-6)
    np.testing.assert_allclose(np.std(standardize(x, *stats)), 1.0, rtol=1e-3)


# ------------------------------------------------- 3. integer inputs


def test_avgpool_on_uint8_pixels_does_not_overflow():
    x = np.array([[200, 100], [150, 16]], np.uint8).reshape(1, 2, 2, 1)
    model = fnet.AvgPool(2)
    _, params = model.init(None, (-1, 2, 2, 1))
    y = model.apply(params, x)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y).ravel(), [116.5])


def test_batchnorm_on_uint8_normalises_in_float_and_keeps_state_float32():
    x = np.array([[200, 10], [100, 20], [0, 30]], np.uint8)
    model = fnet.BatchNorm()
    _, params, state = model.init(None, (-1, 2))
    y, new_state = model.apply(params, state, x, train=True)
    np.testing.assert_allclose(y[0], [math.sqrt(1.5), -math.sqrt(1.5)], rtol=1e-5)
    assert {a.dtype for a in jax.tree.leaves((y, new_state))} == {jnp.dtype(jnp.float32)}


INTEGER_CASES = ["Dense", "Conv2D", "MaxPool", "AvgPool", "LayerNorm", "BatchNorm", "Relu"]


@pytest.mark.parametrize("name", INTEGER_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_])
def test_integer_inputs_compute_in_float_like_their_float_copy(name, dtype):
    from layer_registry import REGISTRY

    case = REGISTRY[name]
    model = fnet.as_stateful(case.make())
    _, params, state = model.init(jax.random.key(0), case.input_shape)
    x = np.random.default_rng(0).integers(0, 2 if dtype is np.bool_ else 250, case.input_shape)
    got, got_state = model.apply(params, state, x.astype(dtype), train=True)
    want, want_state = model.apply(params, state, x.astype(np.float32), train=True)
    assert got.dtype == jnp.float32
    chex.assert_trees_all_close((got, got_state), (want, want_state), rtol=1e-6)


@pytest.mark.parametrize("method", ["dense", "vmap"])
def test_per_example_norms_of_uint8_pixels_equal_those_of_float_pixels(method):
    model = models.mlp([4], 3)
    _, params = model.init(jax.random.key(0), (-1, 2, 3))
    x = np.random.default_rng(0).integers(0, 256, (5, 2, 3)).astype(np.uint8)
    y = np.array([0, 1, 2, 0, 1])
    loss_fn = fnet.per_example.model_loss(model, losses.softmax_cross_entropy)
    got = fnet.per_example.norms(loss_fn, params, x, y, method=method)
    want = fnet.per_example.norms(loss_fn, params, x.astype(np.float32), y, method=method)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_state_keeps_its_dtype_for_float64_inputs():
    with jax.enable_x64(True):
        model = fnet.BatchNorm()
        _, params, state = model.init(None, (-1, 2))
        _, new_state = model.apply(params, state, np.ones((4, 2), np.float64), train=True)
        assert {a.dtype for a in jax.tree.leaves(new_state)} == {jnp.dtype(jnp.float32)}


def test_complex_inputs_are_refused_with_a_type_error():
    model = fnet.Dense(2)
    _, params = model.init(jax.random.key(0), (-1, 2))
    with pytest.raises(TypeError, match=r"Dense.*complex64"):
        model.apply(params, jnp.ones((1, 2), jnp.complex64))


# ------------------------------------------------- 4. out-of-range labels


@pytest.mark.parametrize(
    "loss",
    [
        losses.softmax_cross_entropy,
        losses.multiclass_hinge,
        metrics.accuracy,
        metrics.error_count,
        metrics.confusion_matrix,
    ],
)
def test_eager_losses_and_metrics_refuse_labels_1_to_10_for_10_classes(loss):
    scores = jnp.zeros((10, 10))
    with pytest.raises(LabelError, match=r"labels\[9\]=10"):
        loss(scores, np.arange(1, 11))


def test_eager_per_example_losses_refuse_out_of_range_labels():
    with pytest.raises(LabelError, match="outside"):
        losses.softmax_cross_entropy_per_example(jnp.zeros(3), -1)
    with pytest.raises(LabelError, match="outside"):
        losses.multiclass_hinge_per_example(jnp.zeros(3), 3)


def test_binary_logistic_refuses_0_1_labels_eagerly():
    with pytest.raises(LabelError, match="2 \\* labels - 1"):
        losses.binary_logistic(jnp.zeros(3), np.array([0, 1, 1]))


def test_traced_out_of_range_labels_keep_the_documented_zero_loss():
    ce = jax.jit(losses.softmax_cross_entropy, static_argnames="reduction")
    got = ce(jnp.zeros((2, 3)), jnp.array([3, 0]), reduction="none")
    np.testing.assert_allclose(got, [0.0, math.log(3.0)], rtol=1e-6)
    grad = jax.jit(jax.grad(lambda s: losses.softmax_cross_entropy(s, jnp.array([-1]))))(
        jnp.zeros((1, 3))
    )
    np.testing.assert_array_equal(grad, np.zeros((1, 3)))


def test_check_labels_for_output_refuses_ids_out_of_range_of_the_class_axis():
    with pytest.raises(LabelError, match=r"y\[9\]=10"):
        check_labels_for_output(np.arange(1, 11), (-1, 10))
    check_labels_for_output(np.arange(10), (-1, 10))
    check_labels_for_output(np.ones((10, 10), np.float32), (-1, 10))  # one-hot: not ids
    check_labels_for_output(np.arange(10), (-1,))  # scores and +-1 labels: not checked
    check_labels_for_output(np.full((4, 3), 4), (-1, 3, 5))  # (N, T) ids for (N, T, C)
    with pytest.raises(LabelError):
        check_labels_for_output(np.full((4, 3), 5), (-1, 3, 5))


# ------------------------------------------------- 5. params of another model


def test_params_of_another_model_raise_shape_error_naming_the_layer():
    model = fnet.serial(fnet.Dense(32), fnet.Relu(), fnet.Dense(10))
    other = fnet.serial(fnet.Dense(5), fnet.Relu(), fnet.Dense(10))
    _, params = other.init(jax.random.key(0), (-1, 3))
    with pytest.raises(ShapeError, match=r"layer 'dense_0': Dense\(32\).*\(3, 5\)"):
        model.apply(params, jnp.ones((2, 3)))
    with pytest.raises(ShapeError, match="layer 'dense_0'"):
        jax.jit(model.apply)(params, jnp.ones((2, 3)))


@pytest.mark.parametrize(
    ("make", "other", "shape"),
    [
        (lambda: fnet.Conv2D(4, 3), lambda: fnet.Conv2D(4, 5), (-1, 8, 8, 2)),
        (lambda: fnet.Conv2D(4, 3), lambda: fnet.Conv2D(3, 3), (-1, 8, 8, 2)),
        (lambda: fnet.Dense(4), lambda: fnet.Dense(3), (-1, 2)),
    ],
)
def test_layers_check_params_against_their_configuration(make, other, shape):
    _, params = other().init(jax.random.key(0), shape)
    x = jnp.ones((1, *shape[1:]))
    with pytest.raises(ShapeError, match="configuration"):
        make().apply(params, x)


def test_norm_layers_check_params_and_state_shapes():
    bn = fnet.BatchNorm()
    _, params, _ = bn.init(None, (-1, 3))
    _, small_state = fnet.BatchNorm().init(None, (-1, 2))[1:]
    with pytest.raises(ShapeError, match=r"BatchNorm: state\['mean'\]"):
        bn.apply(params, small_state, jnp.ones((2, 3)))
    with pytest.raises(ShapeError, match="LayerNorm"):
        fnet.LayerNorm().apply({"scale": jnp.ones(3), "offset": jnp.ones(2)}, jnp.ones((2, 3)))


def test_extra_param_entries_raise_shape_error():
    model = fnet.Dense(2)
    _, params = model.init(jax.random.key(0), (-1, 3))
    with pytest.raises(ShapeError, match="expected"):
        model.apply({**params, "extra": jnp.ones(2)}, jnp.ones((1, 3)))


# ------------------------------------------------- 6. BatchNorm on one example


def test_batchnorm_train_on_a_batch_of_one_raises():
    model = fnet.BatchNorm()
    _, params, state = model.init(None, (-1, 3))
    with pytest.raises(ShapeError, match="one value per feature"):
        model.apply(params, state, jnp.ones((1, 3)), train=True)
    # Evaluation, and images with several pixels per example, are fine.
    model.apply(params, state, jnp.ones((1, 3)), train=False)
    model.apply(params, state, jnp.ones((1, 2, 2, 3)), train=True)


# ------------------------------------------------- 7. windows larger than the input


@pytest.mark.parametrize(
    "layer",
    [
        lambda: fnet.MaxPool(5),
        lambda: fnet.AvgPool((2, 5)),
        lambda: fnet.Conv2D(3, 5, padding="VALID"),
    ],
)
def test_a_window_larger_than_the_input_raises_at_that_layer(layer):
    model = fnet.serial(fnet.Conv2D(2, 3), layer(), fnet.Flatten(), fnet.Dense(3))
    with pytest.raises(ShapeError, match=r"layer '(maxpool|avgpool|conv2d)_\d': .*does not fit"):
        model.init(jax.random.key(0), (-1, 4, 4, 1))
    single = layer()
    with pytest.raises(ShapeError, match="does not fit"):
        single.init(jax.random.key(0), (-1, 4, 4, 2))


def test_a_pool_window_larger_than_the_input_raises_in_apply():
    with pytest.raises(ShapeError, match="does not fit"):
        fnet.MaxPool(5).apply({}, jnp.ones((1, 4, 4, 1)))


# ------------------------------------------------- 8. gradcheck with a large f


def test_gradcheck_reports_lost_resolution_for_a_5_percent_error_under_1e8():
    @jax.custom_jvp
    def g(x):
        return jnp.sum(jnp.sin(x) * x)

    # A 5% error in the derivative.
    g.defjvp(lambda p, t: (g(p[0]), jnp.sum(1.05 * (jnp.cos(p[0]) * p[0] + jnp.sin(p[0])) * t[0])))
    x = np.linspace(-1.0, 1.0, 5)
    with jax.enable_x64(True):
        big = fnet.gradcheck.check_grad(lambda v: 1e8 + g(v), x)
        small = fnet.gradcheck.check_grad(g, x)
        fine = fnet.gradcheck.check_grad(lambda v: 1e8 + jnp.sum(jnp.sin(v) * v), x)
    assert not big.passed and not big.resolved
    assert "LOST RESOLUTION" in str(big) and "PASSED" not in str(big)
    assert not small.passed and small.failed == ["x"]
    assert not fine.passed and not fine.resolved  # right or wrong, it cannot tell


# ------------------------------------------------- issue 10: pooling formulations


def _reduce_window(kind, x, win, stride, pad):
    dims, steps = (1, *win, 1), (1, *stride, 1)
    if kind == "MaxPool":
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, pad)
    sums = lax.reduce_window(x, 0.0, lax.add, dims, steps, pad)
    counts = lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype), 0.0, lax.add, win, stride, pad)
    return sums / counts[None, :, :, None]


@pytest.mark.parametrize("kind", ["MaxPool", "AvgPool"])
@pytest.mark.parametrize(
    ("shape", "win", "pad"),
    [
        ((2, 6, 6, 3), (2, 2), "VALID"),
        ((2, 7, 5, 2), (2, 2), "VALID"),
        ((2, 7, 5, 2), (3, 2), "VALID"),
        ((1, 6, 9, 2), (2, 3), "SAME"),
        ((2, 5, 5, 1), (2, 2), "SAME"),
    ],
)
def test_pooling_equals_reduce_window_values_and_gradients_with_ties(kind, shape, win, pad):
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))  # many ties
    model = getattr(fnet, kind)(win, padding=pad)
    _, params = model.init(None, (-1, *shape[1:]))

    def ours(v):
        return model.apply(params, v)

    def ref(v):
        return _reduce_window(kind, v, win, win, pad)

    # NumPy draws: an eager jax.random draw compiles a program for every new shape.
    w = jnp.asarray(rng.standard_normal(jax.eval_shape(ref, x).shape))
    # Forward mode too (Hessian-vector products in fnet.per_example use it).
    t = jnp.asarray(rng.standard_normal(shape), x.dtype)

    def value_grad_jvp(f, v):
        return f(v), jax.grad(lambda u: jnp.sum(f(u) * w))(v), jax.jvp(f, (v,), (t,))[1]

    if kind == "MaxPool":
        # Max and its tie-breaking select are exact in any program, so each side runs as
        # one compiled program (eagerly, every primitive compiles on its own: ~10 s a case
        # on a 2-core machine). Averages stay eager: XLA's fusions round them differently.
        value_grad_jvp = jax.jit(value_grad_jvp, static_argnums=0)
    for got, want in zip(value_grad_jvp(ours, x), value_grad_jvp(ref, x), strict=True):
        if kind == "MaxPool":
            np.testing.assert_array_equal(got, want)
        else:  # a window's sum: XLA's order of the additions differs between CPUs
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_tiled_maxpool_gives_a_tie_gradient_to_the_first_element_in_row_major_order():
    x = jnp.ones((1, 2, 2, 1))
    grad = jax.grad(lambda v: jnp.sum(fnet.MaxPool(2).apply({}, v)))(x)
    np.testing.assert_array_equal(grad[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])
    x = jnp.array([0.0, 5.0, 5.0, 5.0]).reshape(1, 2, 2, 1)
    grad = jax.grad(lambda v: jnp.sum(fnet.MaxPool(2).apply({}, v)))(x)
    np.testing.assert_array_equal(grad[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_default_maxpool_on_even_sizes_uses_the_tiled_formulation():
    assert pooling._tiles((2, 2), (2, 2), "VALID", (28, 28))
    assert not pooling._tiles((3, 3), (2, 2), "VALID", (28, 28))  # overlapping
    assert not pooling._tiles((2, 2), (2, 2), "SAME", (7, 7))  # padded edge
    jaxpr = str(jax.make_jaxpr(lambda v: fnet.MaxPool(2).apply({}, v))(jnp.ones((1, 4, 4, 1))))
    assert "reduce_window" not in jaxpr and "select_and" not in jaxpr


# ------------------------------------------------- issue 10: gather cross-entropy


def test_integer_label_cross_entropy_builds_no_one_hot_matrix():
    logits, labels = jnp.zeros((4, 10)), jnp.arange(4)
    jaxpr = str(jax.make_jaxpr(losses.softmax_cross_entropy)(logits, labels))
    assert "gather" in jaxpr
    assert "f32[4,10] = convert_element_type" not in jaxpr  # no (N, C) one-hot
    assert "eq" not in jaxpr.replace("reduce_", "")


def test_gather_cross_entropy_equals_the_one_hot_form():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(7, 5)).astype(np.float32) * 3)
    ids = rng.integers(0, 5, 7)
    onehot = np.eye(5)[ids]  # float64, as jax.nn.one_hot gives with x64 on

    def per_example_and_grad(labels):  # one compiled program (eagerly: one per primitive)
        return jax.jit(
            lambda s: (
                losses.softmax_cross_entropy(s, labels, reduction="none"),
                jax.grad(lambda s: losses.softmax_cross_entropy(s, labels))(s),
            )
        )(logits)

    (loss_ids, grad_ids), (loss_onehot, grad_onehot) = map(per_example_and_grad, (ids, onehot))
    chex.assert_trees_all_close(loss_ids, loss_onehot, rtol=1e-6)
    chex.assert_trees_all_close(grad_ids, grad_onehot, rtol=1e-6, atol=1e-7)


# ------------------------------------------------- issue 11: mixed precision


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda cd: models.mlp([16], 3, compute_dtype=cd), (8, 12)),
        (lambda cd: models.linear(3, compute_dtype=cd), (8, 3, 4)),
        (lambda cd: models.convnet(3, channels=(4,), hidden=8, compute_dtype=cd), (4, 8, 8, 1)),
    ],
    ids=["mlp", "linear", "convnet"],
)
def test_compute_dtype_keeps_float32_params_and_agrees_with_float32(dtype, make, shape):
    low, full = make(dtype), make(None)
    _, params = low.init(jax.random.key(0), (-1, *shape[1:]))
    _, params32 = full.init(jax.random.key(0), (-1, *shape[1:]))
    chex.assert_trees_all_equal(params, params32)
    x = jax.random.normal(jax.random.key(1), shape)
    y = jnp.arange(shape[0]) % 3
    # Compiled (as training runs it): eagerly, every low-precision primitive compiles on
    # its own, which took ~20 s for the convnet on a 2-core machine.
    logits = jax.jit(low.apply)(params, x)
    assert logits.dtype == dtype

    def loss_and_grad(model, p):
        loss_of = lambda p: losses.softmax_cross_entropy(model.apply(p, x), y)
        return jax.jit(jax.value_and_grad(loss_of))(p)

    (loss, grads), (want, grads32) = loss_and_grad(low, params), loss_and_grad(full, params32)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, want, rtol=3e-2)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32), strict=True):
        np.testing.assert_allclose(g, g32, atol=5e-2 * float(np.max(np.abs(g32))) + 1e-6)


def test_compute_dtype_must_be_floating():
    with pytest.raises(ValueError, match="compute_dtype"):
        fnet.Dense(3, compute_dtype=jnp.int8)
    assert (
        fnet.describe(fnet.Dense(3, compute_dtype=jnp.bfloat16))["config"]["compute_dtype"]
        == "bfloat16"
    )
