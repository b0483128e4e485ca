"""Every registered layer, combinator and ready model passes fnet's gradient check.

In float64, w.r.t. both its params and its input, at a small random input (the slides'
recipe), with max relative error below 1e-6, on 24 random coordinates of each leaf.
Dropout is checked with a fixed key (its mask is then a constant); BatchNorm in training
mode (gradients flow through the batch statistics). Random inputs keep ReLU/max kinks
away from the finite-difference steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from layer_registry import REGISTRY

import fnet
from fnet.gradcheck import check_grad


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_layer_passes_gradcheck_in_float64(name):
    case = REGISTRY[name]
    model = fnet.as_stateful(case.make())
    _, params, state = model.init(jax.random.key(0), case.input_shape)
    params = fnet.cast_floating(params, jnp.float64)
    state = fnet.cast_floating(state, jnp.float64)
    # Input and output weights from NumPy: an eager jax.random draw compiles a program for
    # every new shape (seconds over the registry on a 2-core machine).
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(case.input_shape))
    out = jax.eval_shape(
        lambda p, x: model.apply(p, state, x, train=True, key=jax.random.key(2))[0], params, x
    )
    weights = [jnp.asarray(rng.standard_normal(o.shape)) for o in jax.tree.leaves(out)]

    def objective(p_and_x):
        p, x = p_and_x
        ys, _ = model.apply(p, state, x, train=True, key=jax.random.key(2))
        leaves = jax.tree.leaves(ys)
        terms = [jnp.sum(jnp.tanh(y) * w) for y, w in zip(leaves, weights, strict=True)]
        return sum(terms[1:], terms[0])

    # A seeded random subset of coordinates per leaf keeps conv checks fast.
    report = check_grad(objective, (params, x), max_coords_per_leaf=24, key=jax.random.key(4))
    assert report.passed, f"{name}:\n{report}"
    assert report.max_rel_error < 1e-6
