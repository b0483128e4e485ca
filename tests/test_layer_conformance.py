"""Every public layer, combinator and ready model passes the same checks.

The registry lives in ``layer_registry.py``; ``test_every_public_layer_is_registered``
fails when a layer is added to ``fnet.layers`` without an entry there.
"""

from __future__ import annotations

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_registry import REGISTRY

import fnet
from fnet.core import as_stateful

CASES = sorted(REGISTRY)


def _init(name, key=None):
    case = REGISTRY[name]
    model = as_stateful(case.make())
    key = jax.random.key(0) if key is None else key
    out_shape, params, state = model.init(key, (-1, *case.input_shape[1:]))
    # From NumPy: an eager jax.random draw compiles a program for every new shape.
    x = jnp.asarray(np.random.default_rng(1).standard_normal(case.input_shape), jnp.float32)
    return model, out_shape, params, state, x


def _apply(model, params, state, x, *, train=False, key=None):
    return model.apply(params, state, x, key=key, train=train)[0]


def _registered(name: str) -> bool:
    return any(key == name or key.startswith(f"{name}_") for key in REGISTRY)


def _shapes(out_shape):
    """Output shapes as a list: one per output (``parallel(combine=None)`` has several)."""
    return list(out_shape) if out_shape and isinstance(out_shape[0], tuple) else [out_shape]


def test_every_public_layer_is_registered():
    public = {n for n in fnet.layers.__all__ if n[0].isupper()}
    missing = sorted(n for n in public if not _registered(n))
    assert not missing, f"layers missing from tests/layer_registry.py: {missing}"


def test_every_combinator_and_ready_model_is_registered():
    names = [*fnet.combinators.__all__, *(f"models.{n}" for n in fnet.models.__all__)]
    missing = sorted(n for n in names if not _registered(n))
    assert not missing, f"missing from tests/layer_registry.py: {missing}"


def test_registry_covers_parallel_without_combine_and_stateful_branches():
    made = {name: REGISTRY[name].make() for name in CASES}
    assert any(m.kind == "parallel" and m.config["combine"] is None for m in made.values())
    for kind in ("parallel", "residual"):
        assert any(m.kind == kind and fnet.is_stateful(m) for m in made.values()), kind


@pytest.mark.parametrize("kind", ["serial", "parallel", "residual"])
def test_combinators_reject_unknown_state_keys(kind):
    make = getattr(fnet, kind)
    model = as_stateful(make(fnet.Dense(3), fnet.BatchNorm()))
    _, params, state = model.init(jax.random.key(0), (-1, 3))
    with pytest.raises(KeyError, match="match no layer"):
        model.apply(params, {**state, "stray": {"mean": jnp.zeros(3)}}, jnp.ones((2, 3)))


@pytest.mark.parametrize("name", CASES)
def test_model_declares_the_constructor_that_built_it(name):
    model = REGISTRY[name].make()
    assert model.kind, f"{name} has no kind"
    for _, child in model.children:
        assert child.kind


@pytest.mark.parametrize("name", CASES)
def test_declared_output_shape_matches_apply(name):
    model, out_shape, params, state, x = _init(name)
    ys = jax.tree.leaves(_apply(model, params, state, x))
    shapes = _shapes(out_shape)
    assert len(ys) == len(shapes)
    for y, shape in zip(ys, shapes, strict=True):
        assert shape[0] == -1
        assert tuple(y.shape) == (x.shape[0], *shape[1:])


@pytest.mark.parametrize("name", CASES)
def test_declared_output_shape_with_concrete_batch(name):
    case = REGISTRY[name]
    out_shape, *_ = as_stateful(case.make()).init(jax.random.key(0), case.input_shape)
    assert all(shape[0] == case.input_shape[0] for shape in _shapes(out_shape))


@pytest.mark.parametrize("name", CASES)
def test_jit_equals_eager(name):
    model, _, params, state, x = _init(name)
    eager = _apply(model, params, state, x)
    jitted = jax.jit(lambda p, s, x: _apply(model, p, s, x))(params, state, x)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_vmap_over_single_examples_equals_batched(name):
    model, _, params, state, x = _init(name)
    batched = _apply(model, params, state, x)
    one_by_one = jax.jit(
        jax.vmap(lambda xi: jax.tree.map(lambda y: y[0], _apply(model, params, state, xi[None])))
    )(x)
    chex.assert_trees_all_close(batched, one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_gradients_are_finite(name):
    model, _, params, state, x = _init(name)

    def loss(p, x):
        ys = _apply(model, p, state, x, train=True, key=jax.random.key(2))
        return sum(jnp.sum(jnp.sin(y)) for y in jax.tree.leaves(ys))

    g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    for leaf in jax.tree.leaves((g_params, g_x)):
        assert bool(jnp.all(jnp.isfinite(leaf)))


@pytest.mark.parametrize("name", CASES)
def test_float32_in_float32_out(name):
    model, _, params, state, x = _init(name)
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.float32
    for train in (False, True):
        ys = _apply(model, params, state, x, train=train, key=jax.random.key(3))
        assert {y.dtype for y in jax.tree.leaves(ys)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", CASES)
def test_same_key_same_result(name):
    model, _, p1, s1, x = _init(name, jax.random.key(7))
    _, _, p2, s2, _ = _init(name, jax.random.key(7))
    chex.assert_trees_all_equal(p1, p2)
    y1 = _apply(model, p1, s1, x, train=True, key=jax.random.key(4))
    y2 = _apply(model, p2, s2, x, train=True, key=jax.random.key(4))
    chex.assert_trees_all_equal(y1, y2)


@pytest.mark.parametrize("name", CASES)
def test_params_are_plain_nested_dicts_of_arrays(name):
    _, _, params, state, _ = _init(name)

    def check(tree):
        assert isinstance(tree, dict)
        for key, value in tree.items():
            assert isinstance(key, str)
            if isinstance(value, dict):
                check(value)
            else:
                assert isinstance(value, jax.Array)

    check(params)
    check(state)


def _has_params(name: str) -> bool:
    """Whether the model has params, from shapes alone (``jax.eval_shape``: nothing is
    computed or compiled while the tests are collected, in every pytest-xdist worker)."""
    case = REGISTRY[name]
    model = as_stateful(case.make())
    init = lambda key: model.init(key, (-1, *case.input_shape[1:]))[1]
    return bool(jax.tree.leaves(jax.eval_shape(init, jax.random.key(0))))


# Layers without params accept any trailing shape; those with params, and Reshape, check it.
SHAPE_CHECKED = [n for n in CASES if _has_params(n) or n == "Reshape"]


@pytest.mark.parametrize("name", SHAPE_CHECKED)
def test_wrong_input_shape_in_apply_raises_shape_error_naming_shapes(name):
    model, _, params, state, x = _init(name)
    bad = jnp.ones((*x.shape[:-1], x.shape[-1] + 1), x.dtype)
    with pytest.raises(fnet.errors.ShapeError) as err:
        _apply(model, params, state, bad)
    message = str(err.value)
    if fnet.core.as_stateful(REGISTRY[name].make()).children:
        # Inside a combinator the error names the failing child and the shape it received.
        assert message.startswith("layer '") and "got shape (" in message
    else:
        assert str(bad.shape) in message


def test_registry_inputs_are_deterministic():
    _, _, _, _, x1 = _init("Dense")
    _, _, _, _, x2 = _init("Dense")
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("name", CASES)
def test_describe_is_json_able_and_names_every_child(name):
    model = REGISTRY[name].make()
    description = fnet.describe(model)
    assert json.loads(json.dumps(description)) == description
    assert description["kind"] == model.kind
    assert [c["child"] for c in description["children"]] == [n for n, _ in model.children]
