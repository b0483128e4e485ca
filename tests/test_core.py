"""The model contract: named params, name-derived keys, explicit state, clear errors."""

from __future__ import annotations

import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import initializers, models

KEY = jax.random.key(0)


def test_model_unpacks_like_a_pair_of_functions():
    init, apply = fnet.Dense(3)
    out_shape, params = init(KEY, (-1, 2))
    assert out_shape == (-1, 3)
    assert apply(params, jnp.ones((5, 2), jnp.float32)).shape == (5, 3)


def test_serial_params_are_keyed_by_readable_layer_names():
    _, params = fnet.serial(fnet.Dense(4), fnet.Relu(), fnet.Dense(2)).init(KEY, (-1, 3))
    assert set(params) == {"dense_0", "dense_1"}
    assert params["dense_0"]["w"].shape == (3, 4)
    assert params["dense_1"]["b"].shape == (2,)


def test_explicit_names_are_used_and_must_be_unique():
    _, params = fnet.serial(("hidden", fnet.Dense(4)), ("out", fnet.Dense(2))).init(KEY, (-1, 3))
    assert set(params) == {"hidden", "out"}
    with pytest.raises(ValueError, match="unique"):
        fnet.serial(("a", fnet.Dense(4)), ("a", fnet.Dense(2)))


@pytest.mark.parametrize(
    "inserted",
    [fnet.Relu(), fnet.Dropout(0.5), fnet.BatchNorm(), ("extra", fnet.Dense(4))],
    ids=["relu", "dropout", "batchnorm", "named_dense"],
)
def test_inserting_a_layer_leaves_other_initial_values_bit_identical(inserted):
    before = fnet.as_stateful(fnet.serial(fnet.Dense(4), fnet.Tanh(), fnet.Dense(4)))
    after = fnet.as_stateful(fnet.serial(fnet.Dense(4), inserted, fnet.Tanh(), fnet.Dense(4)))
    _, p_before, _ = before.init(KEY, (-1, 3))
    _, p_after, _ = after.init(KEY, (-1, 3))
    for name in p_before:
        chex.assert_trees_all_equal(p_before[name], p_after[name])


def test_layer_keys_depend_on_names_not_positions():
    # The same name at another position gets the same initial values, and the derivation
    # fold_in(parent, crc32(name)) is pinned: saved seeds reproduce across versions.
    _, first = fnet.serial(("a", fnet.Dense(3)), ("b", fnet.Dense(3))).init(KEY, (-1, 3))
    _, swapped = fnet.serial(("b", fnet.Dense(3)), ("a", fnet.Dense(3))).init(KEY, (-1, 3))
    chex.assert_trees_all_equal(first, swapped)
    chex.assert_trees_all_equal(
        jax.random.key_data(fnet.layer_key(KEY, "a")),
        jax.random.key_data(jax.random.fold_in(KEY, zlib.crc32(b"a") & 0x7FFFFFFF)),
    )


def test_stateless_chains_stay_stateless_and_batchnorm_makes_them_stateful():
    assert not fnet.is_stateful(fnet.serial(fnet.Dense(2), fnet.Relu()))
    assert fnet.is_stateful(fnet.serial(fnet.Dense(2), fnet.BatchNorm()))
    assert fnet.is_stateful(fnet.residual(fnet.Dense(2), fnet.BatchNorm()))


def test_batchnorm_state_changes_only_in_training():
    model = fnet.serial(fnet.Dense(3), fnet.BatchNorm(momentum=0.5))
    _, params, state = model.init(KEY, (-1, 2))
    x = jax.random.normal(jax.random.key(1), (16, 2)) * 3.0 + 1.0
    _, same = model.apply(params, state, x, train=False)
    chex.assert_trees_all_equal(same, state)
    y, new = model.apply(params, state, x, train=True)
    h = fnet.Dense(3).apply(params["dense_0"], x)
    np.testing.assert_allclose(new["batchnorm_0"]["mean"], 0.5 * h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new["batchnorm_0"]["var"], 0.5 + 0.5 * h.var(0), rtol=1e-5)
    # In training the output is normalized with the batch statistics.
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-3)


def test_batchnorm_under_vmap_with_axis_name_matches_the_batch():
    model = fnet.BatchNorm(axis_name="batch")
    _, params, state = model.init(KEY, (-1, 3))
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y_batch, s_batch = fnet.BatchNorm().apply(params, state, x, train=True)

    def one(xi):
        return model.apply(params, state, xi[None], train=True)

    y_vmap, s_vmap = jax.vmap(one, axis_name="batch")(x)
    np.testing.assert_allclose(y_vmap[:, 0], y_batch, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_vmap["mean"][0], s_batch["mean"], rtol=1e-5)


def test_dropout_rate_is_the_drop_probability():
    x = jnp.ones((200, 100), jnp.float32)
    y = fnet.Dropout(0.3).apply({}, x, key=jax.random.key(3), train=True)
    assert abs(float(jnp.mean(y == 0)) - 0.3) < 0.02
    np.testing.assert_allclose(float(y.mean()), 1.0, atol=0.03)  # inverted scaling
    chex.assert_trees_all_equal(fnet.Dropout(0.3).apply({}, x, train=False), x)


def test_dropout_in_training_without_a_key_says_to_pass_one():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fnet.Dropout(0.5).apply({}, jnp.ones((2, 2)), train=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fnet.Dense(-3),
        lambda: fnet.Dense(0),
        lambda: fnet.Conv2D(0, 3),
        lambda: fnet.Conv2D(4, 3, padding="FULL"),
        lambda: fnet.Dropout(1.0),
        lambda: fnet.Dropout(-0.1),
        lambda: fnet.Activation("swish"),
        lambda: fnet.Maxout(0),
        lambda: models.mlp([0], 10),
        lambda: models.mlp([10], 10, "swish"),
        lambda: initializers.get("nope"),
    ],
)
def test_invalid_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: fnet.Dense(True), TypeError, r"Dense: out_dim must be an int >= 1, got True"),
        (lambda: fnet.Dense(2.0), TypeError, r"Dense: out_dim must be an int >= 1, got 2.0"),
        (lambda: fnet.Conv2D(True, 3), TypeError, r"Conv2D: features must be an int >= 1"),
        (lambda: fnet.Conv2D(4, 2.0), TypeError, r"kernel_size must be an int >= 1 or a pair"),
        (lambda: fnet.Conv2D(4, (3, 0)), ValueError, r"kernel_size\[1\] must be >= 1, got 0"),
        (lambda: fnet.Conv2D(4, 3, strides=(1, 2, 1)), TypeError, r"strides must be an int"),
        (lambda: fnet.Conv2D(4, 3, strides=False), TypeError, r"strides must be an int >= 1"),
        (lambda: fnet.Maxout(1.5), TypeError, r"Maxout: pieces must be an int >= 1, got 1.5"),
        (lambda: models.mlp([8, True], 10), TypeError, r"mlp: hidden_sizes\[1\] must be an int"),
        (lambda: models.mlp([8, 0], 10), ValueError, r"mlp: hidden_sizes\[1\] must be >= 1"),
    ],
)
def test_size_arguments_name_the_argument_and_reject_bools_and_floats(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_size_arguments_accept_numpy_integers_and_record_python_ints():
    dense = fnet.Dense(np.int64(3))
    conv = fnet.Conv2D(np.int32(2), (np.int64(3), 3))
    assert dense.config["out_dim"] == 3 and type(dense.config["out_dim"]) is int
    assert conv.config["kernel_size"] == [3, 3]
    assert all(type(v) is int for v in conv.config["kernel_size"])


def test_serial_rejects_a_layer_constructor_that_was_not_called():
    with pytest.raises(TypeError, match="forget to call"):
        fnet.serial(fnet.Dense(2), fnet.Relu)


def test_wrong_input_shape_in_init_names_the_layer_and_shapes():
    model = fnet.serial(("encoder", fnet.serial(fnet.Conv2D(4, 3), fnet.Flatten())))
    with pytest.raises(fnet.errors.ShapeError, match=r"layer 'encoder/conv2d_0'.*\(-1, 28, 28\)"):
        model.init(KEY, (-1, 28, 28))


def test_mismatched_params_are_reported_by_layer_name():
    _, params = models.mlp([5], 3).init(KEY, (-1, 4))
    with pytest.raises(KeyError, match="match no layer"):
        models.linear(3).apply(params, jnp.ones((2, 4)))


def test_residual_requires_a_shape_preserving_branch():
    with pytest.raises(fnet.errors.ShapeError, match="preserve the shape"):
        fnet.residual(fnet.Dense(3)).init(KEY, (-1, 4))


def test_parallel_concatenates_sums_or_returns_branches():
    x = jnp.ones((2, 4), jnp.float32)
    for combine, shape in (("concat", (-1, 5)), ("sum", None)):
        model = fnet.parallel(fnet.Dense(2), fnet.Dense(3), combine=combine)
        if shape is None:
            with pytest.raises(fnet.errors.ShapeError):
                model.init(KEY, (-1, 4))
            continue
        out, params = model.init(KEY, (-1, 4))
        assert out == shape and model.apply(params, x).shape == (2, 5)
    out, params = fnet.parallel(fnet.Dense(2), fnet.Dense(3), combine=None).init(KEY, (-1, 4))
    assert out == ((-1, 2), (-1, 3))


@pytest.mark.parametrize(
    ("sizes", "weights", "biases"),
    [([3, 4, 2], 20, 6), ([3, 4, 4, 1], 32, 9), ([784, 200, 10], 158_800, 210)],
)
def test_parameter_counts_of_the_slides_architectures(sizes, weights, biases):
    """CS231n's exercise: [3,4,2] has 26 learnable parameters, [3,4,4,1] has 41."""
    model = models.mlp(sizes[1:-1], sizes[-1])
    _, params = model.init(KEY, (-1, sizes[0]))
    n_weights = sum(p["w"].size for p in params.values())
    assert n_weights == weights
    assert fnet.param_count(params) == weights + biases
    assert sum(p["b"].size for p in params.values()) == biases  # one bias per neuron


def test_summary_of_a_huge_model_allocates_nothing():
    huge = fnet.serial(fnet.Dense(100_000), fnet.Relu(), fnet.Dense(100_000))  # 10^10 params
    table = fnet.summary(huge, (-1, 100_000))  # 40 GB of float32 if it allocated
    assert table.total_params == 100_000 * 100_000 * 2 + 200_000
    assert [r.name for r in table.rows] == ["dense_0", "relu_0", "dense_1"]
    assert "dense_1" in str(table)


def test_summary_reports_flops_of_a_dense_layer():
    table = fnet.summary(fnet.Dense(10), (-1, 784))
    assert table.total_params == 7850
    assert table.total_flops is not None and table.total_flops >= 2 * 784 * 10


def test_bias_trick_folds_the_bias_into_the_weights():
    _, params = fnet.Dense(3).init(KEY, (-1, 4))
    params["b"] = jnp.arange(3.0, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (5, 4))
    folded = fnet.layers.append_ones(x) @ fnet.layers.fold_bias(params)
    np.testing.assert_allclose(folded, fnet.Dense(3).apply(params, x), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "shape", "std"),
    [
        ("glorot_normal", (300, 200), np.sqrt(2 / 500)),
        ("glorot_uniform", (300, 200), np.sqrt(2 / 500)),
        ("he_normal", (3, 3, 16, 32), np.sqrt(2 / (9 * 16))),
        ("lecun_normal", (400, 100), np.sqrt(1 / 400)),
    ],
)
def test_initializers_have_the_stated_standard_deviation(name, shape, std):
    w = initializers.get(name)(jax.random.key(2), shape, jnp.float32)
    assert w.dtype == jnp.float32 and w.shape == shape
    np.testing.assert_allclose(float(jnp.std(w)), std, rtol=0.05)
    np.testing.assert_allclose(float(jnp.mean(w)), 0.0, atol=std * 0.05)


def test_dense_default_init_is_the_slides_rule_with_zero_bias():
    _, params = fnet.Dense(200).init(jax.random.key(3), (-1, 784))
    np.testing.assert_allclose(float(params["w"].std()), np.sqrt(2 / 984), rtol=0.02)
    assert not np.any(params["b"])


def test_sigmoid_derivative_is_s_times_one_minus_s():
    x = jnp.linspace(-5.0, 5.0, 11)
    s = fnet.activations.sigmoid(x)
    np.testing.assert_allclose(jax.vmap(jax.grad(fnet.activations.sigmoid))(x), s * (1 - s))


def test_saturated_sigmoid_kills_the_gradient():
    assert float(jax.grad(fnet.activations.sigmoid)(20.0)) < 1e-8


def test_leaky_relu_is_max_of_tenth_x_and_x_by_default():
    x = jnp.array([-2.0, -0.5, 0.0, 3.0])
    np.testing.assert_allclose(fnet.LeakyRelu().apply({}, x[None])[0], jnp.maximum(0.1 * x, x))


def test_maxout_takes_the_max_over_consecutive_pieces():
    x = jnp.array([[1.0, 5.0, -2.0, 0.0, 7.0, 3.0]])
    np.testing.assert_array_equal(fnet.Maxout(2).apply({}, x), [[5.0, 0.0, 7.0]])
    np.testing.assert_array_equal(fnet.Maxout(3).apply({}, x), [[5.0, 7.0]])


def test_elu_has_finite_gradients_for_large_inputs():
    g = jax.grad(lambda x: jnp.sum(fnet.activations.elu(x)))(jnp.array([-50.0, 0.5, 100.0]))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_avgpool_with_same_padding_averages_only_real_entries():
    x = jnp.ones((1, 3, 3, 1), jnp.float32)
    y = fnet.AvgPool(2, 1, "SAME").apply({}, x)
    np.testing.assert_allclose(y, jnp.ones_like(y))


def test_cast_floating_converts_only_floating_leaves():
    tree = {"w": jnp.ones(2, jnp.float32), "n": jnp.ones(2, jnp.int32)}
    out = fnet.cast_floating(tree, jnp.float64)
    assert out["w"].dtype == jnp.float64 and out["n"].dtype == jnp.int32


def test_abstract_signature_keys_arrays_numpy_and_tracers_alike_and_round_trips():
    from fnet.tree import abstract_args, abstract_signature

    tree = {"w": jnp.ones((3, 2), jnp.float32), "n": np.ones(4, np.float32), "s": 2.0}
    sig = abstract_signature(tree, None)
    assert hash(sig) == hash(abstract_signature(tree, None))
    back, none = abstract_args(sig)
    assert none is None
    assert back["w"].shape == (3, 2) and back["n"].dtype == jnp.float32
    assert back["s"].weak_type  # a Python float stays weakly typed, as jit sees it
    other = {**tree, "w": jnp.ones((3, 3), jnp.float32)}
    assert abstract_signature(other, None) != sig
    # Under a transformation (tracers have no concrete sharding) it still works.
    jax.jit(lambda t: abstract_signature(t) and t["w"])(tree)
