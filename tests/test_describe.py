"""``fnet.describe``: a JSON-able fingerprint of a model's kinds and configuration."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

import fnet
from fnet import initializers, models


def _fingerprint(model):
    return json.dumps(fnet.describe(model), sort_keys=True)


def test_same_shapes_different_activation_describe_differently():
    relu = fnet.serial(fnet.Dense(8), fnet.Relu(), fnet.Dense(3))
    tanh = fnet.serial(fnet.Dense(8), fnet.Tanh(), fnet.Dense(3))
    shapes = [jax.tree.map(jnp.shape, m.init(jax.random.key(0), (-1, 4))[1]) for m in (relu, tanh)]
    assert shapes[0] == shapes[1]
    assert _fingerprint(relu) != _fingerprint(tanh)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (lambda: fnet.Dropout(0.1), lambda: fnet.Dropout(0.5)),
        (lambda: fnet.LeakyRelu(0.1), lambda: fnet.LeakyRelu(0.2)),
        (lambda: fnet.BatchNorm(momentum=0.9), lambda: fnet.BatchNorm(momentum=0.99)),
        (lambda: fnet.Dense(3, w_init="he_normal"), lambda: fnet.Dense(3)),
        (lambda: fnet.Conv2D(3, 3, padding="VALID"), lambda: fnet.Conv2D(3, 3)),
        (lambda: fnet.MaxPool(2), lambda: fnet.AvgPool(2)),
        (lambda: fnet.MaxPool(2), lambda: fnet.MaxPool(2, 1)),
        (
            lambda: fnet.parallel(fnet.Dense(2), fnet.Dense(2)),
            lambda: fnet.parallel(fnet.Dense(2), fnet.Dense(2), combine="sum"),
        ),
        (lambda: models.mlp([4], 3, "relu"), lambda: models.mlp([4], 3, "elu")),
    ],
)
def test_configuration_changes_the_description(a, b):
    assert _fingerprint(a()) != _fingerprint(b())


def test_equal_constructions_describe_equally():
    assert _fingerprint(models.convnet(10)) == _fingerprint(models.convnet(10))


def test_registered_initializer_callable_is_described_by_its_name():
    by_name = fnet.Dense(3, w_init="he_normal")
    by_function = fnet.Dense(3, w_init=initializers.he_normal)
    assert fnet.describe(by_function)["config"]["w_init"] == "he_normal"
    assert _fingerprint(by_name) == _fingerprint(by_function)


def test_user_initializer_is_described_by_its_qualname():
    def my_init(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    config = fnet.describe(fnet.Dense(3, w_init=my_init))["config"]
    assert config["w_init"] == (
        "callable:test_describe.test_user_initializer_is_described_by_its_qualname.<locals>.my_init"
    )


def test_description_nests_through_combinators():
    model = fnet.serial(fnet.residual(fnet.Dense(4), fnet.Tanh()), fnet.BatchNorm())
    d = fnet.describe(model)
    assert d["kind"] == "serial" and d["stateful"] is True
    residual = d["children"][0]
    assert residual["child"] == "residual_0" and residual["kind"] == "residual"
    assert [c["kind"] for c in residual["children"]] == ["Dense", "Tanh"]
    assert residual["children"][0]["config"]["out_dim"] == 4
    assert d["children"][1]["config"]["momentum"] == 0.99


def test_describe_rejects_non_models():
    with pytest.raises(TypeError, match="expected an fnet Model"):
        fnet.describe(lambda x: x)
