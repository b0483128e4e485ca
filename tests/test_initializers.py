"""fnet.initializers: jax.nn.initializers.variance_scaling under fnet's names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import initializers

# (name, the bound a of a uniform U(-a, a) or None for a normal) for a (300, 200) weight.
FAN_IN, FAN_OUT = 300, 200


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("glorot_uniform", np.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he_uniform", np.sqrt(6 / FAN_IN)),
        ("lecun_uniform", np.sqrt(3 / FAN_IN)),
    ],
)
def test_uniform_initializers_stay_inside_their_bound_and_fill_it(name, bound):
    w = np.asarray(initializers.get(name)(jax.random.key(0), (FAN_IN, FAN_OUT), jnp.float32))
    assert w.dtype == np.float32 and w.shape == (FAN_IN, FAN_OUT)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound


def test_glorot_normal_is_not_truncated_unlike_jax_default():
    # The slides' rule is a plain normal: with 60,000 draws some lie beyond 2 sigma
    # (about 4.6%), which JAX's own truncated glorot_normal never produces.
    w = np.asarray(initializers.glorot_normal(jax.random.key(1), (FAN_IN, FAN_OUT)))
    sigma = np.sqrt(2 / (FAN_IN + FAN_OUT))
    assert 0.03 < np.mean(np.abs(w) > 2 * sigma) < 0.06
    assert "sqrt(2 / (fan_in + fan_out))" in (initializers.glorot_normal.__doc__ or "")


def test_fan_scaled_initializers_reject_a_vector_shape():
    with pytest.raises(ValueError, match="1-dimensional"):
        initializers.he_normal(jax.random.key(0), (5,))


def test_initializers_follow_the_requested_dtype():
    w = initializers.lecun_normal(jax.random.key(0), (3, 3, 2, 4), jnp.bfloat16)
    assert w.dtype == jnp.bfloat16 and w.shape == (3, 3, 2, 4)
