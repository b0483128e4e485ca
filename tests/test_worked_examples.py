"""The slides' worked examples (SEEDS §3 and §5), reproduced with fnet's functions."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import losses, regularizers

# CS231n's three training images (columns of the slide): rows are examples here.
SCORES = jnp.array(
    [
        [3.2, 5.1, -1.7],  # cat image: scores for cat, car, frog
        [1.3, 4.9, 2.0],  # car image
        [2.2, 2.5, -3.1],  # frog image
    ]
)
CORRECT = jnp.array([0, 1, 2])  # cat, car, frog


def test_multiclass_svm_loss_of_the_cat_car_frog_example():
    """cat: max(0, 5.1-3.2+1) + max(0, -1.7-3.2+1) = 2.9; car: 0; frog: 6.3 + 6.6 = 12.9;
    mean (2.9 + 0 + 12.9) / 3 = 5.27 with Delta = 1."""
    per_example = losses.multiclass_hinge(SCORES, CORRECT, 1.0, reduction="none")
    chex.assert_trees_all_close(per_example, jnp.array([2.9, 0.0, 12.9]), atol=1e-12)
    assert losses.multiclass_hinge(SCORES, CORRECT) == pytest.approx(15.8 / 3, abs=1e-12)
    assert round(float(losses.multiclass_hinge(SCORES, CORRECT)), 2) == 5.27


def test_cross_entropy_of_the_cat_scores_is_2_04_nats_and_the_slides_0_89_is_log10():
    """-log softmax([3.2, 5.1, -1.7])[cat] = 2.04 with the natural log (fnet's loss).

    The slides print 0.89: that is the same quantity with log base 10,
    2.0404 / ln 10 = 0.886. Probabilities: cat 0.13, car 0.87, frog 0.00."""
    loss = losses.softmax_cross_entropy(SCORES[:1], CORRECT[:1])
    assert loss == pytest.approx(2.0404, abs=1e-4)
    assert float(loss) / np.log(10.0) == pytest.approx(0.89, abs=5e-3)
    probs = jax.nn.softmax(SCORES[0])
    chex.assert_trees_all_close(probs, jnp.array([0.13, 0.87, 0.00]), atol=5e-3)


def test_backprop_through_x_plus_y_times_z():
    """f(x, y, z) = (x + y) z at x=-2, y=5, z=-4: f = -12, df/dx = df/dy = z = -4,
    df/dz = x + y = 3."""

    def f(x, y, z):
        return (x + y) * z

    x, y, z = -2.0, 5.0, -4.0
    assert f(x, y, z) == -12.0
    grads = jax.grad(f, argnums=(0, 1, 2))(x, y, z)
    assert tuple(float(g) for g in grads) == (-4.0, -4.0, 3.0)


def test_backprop_through_a_sigmoid_neuron():
    """1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = [2, -3, -3], x = [-1, -2]: the
    pre-activation is 1, the output 0.73; the sigmoid gate's local gradient
    s (1 - s) = 0.2 gives dw = [-0.2, -0.39, 0.2] and dx = [0.39, -0.59]."""

    def neuron(w, x):
        return jax.nn.sigmoid(w[0] * x[0] + w[1] * x[1] + w[2])

    w = jnp.array([2.0, -3.0, -3.0])
    x = jnp.array([-1.0, -2.0])
    out = neuron(w, x)
    assert out == pytest.approx(0.73, abs=5e-3)
    dw, dx = jax.grad(neuron, argnums=(0, 1))(w, x)
    chex.assert_trees_all_close(dw, jnp.array([-0.20, -0.39, 0.20]), atol=5e-3)
    chex.assert_trees_all_close(dx, jnp.array([0.39, -0.59]), atol=5e-3)
    # Exactly: local gradient s (1 - s) times the inputs [x0, x1, 1] and weights [w0, w1].
    s = float(out)
    chex.assert_trees_all_close(dw, s * (1 - s) * jnp.array([-1.0, -2.0, 1.0]), rtol=1e-12)
    chex.assert_trees_all_close(dx, s * (1 - s) * jnp.array([2.0, -3.0]), rtol=1e-12)


def test_pytorch_autograd_example_gives_minus_1_5_everywhere():
    """x = ones(2, 2); y = x - 2; z = 3 y^2; out = z.mean(): d out / dx = 6 y / 4 = -1.5."""

    def out(x):
        y = x - 2
        z = 3 * y**2
        return z.mean()

    x = jnp.ones((2, 2))
    assert out(x) == 3.0
    chex.assert_trees_all_equal(jax.grad(out)(x), jnp.full((2, 2), -1.5))


def test_l2_prefers_the_spread_out_weights_that_score_the_same():
    """x = [1,1,1,1]; w1 = [1,0,0,0] and w2 = [.25,.25,.25,.25] both score 1, but
    R(w1) = 1 and R(w2) = 0.25: L2 prefers w2, which uses all of the input."""
    x = jnp.ones(4)
    w1 = jnp.array([1.0, 0.0, 0.0, 0.0])
    w2 = jnp.full(4, 0.25)
    assert jnp.dot(w1, x) == jnp.dot(w2, x) == 1.0
    r1, r2 = regularizers.l2({"w": w1}), regularizers.l2({"w": w2})
    assert (float(r1), float(r2)) == (1.0, 0.25)
    assert r2 < r1


def test_hinge_stops_pulling_once_margins_are_met_cross_entropy_always_pulls():
    """The car image's scores [1.3, 4.9, 2.0] beat every wrong class by more than Delta = 1:
    its hinge loss is 0 and its gradient exactly 0. Cross-entropy's gradient
    softmax(s) - onehot(y) is never 0 for finite scores: it keeps pushing. So does L2,
    whose gradient 2w is zero only at w = 0."""
    # Summed over the batch, row i of the gradient is example i's own gradient.
    hinge_grad = jax.jit(jax.grad(lambda s: losses.multiclass_hinge(s, CORRECT, reduction="sum")))
    ce_grad = jax.jit(jax.grad(lambda s: losses.softmax_cross_entropy(s, CORRECT, reduction="sum")))
    per_example_hinge = losses.multiclass_hinge(SCORES, CORRECT, reduction="none")
    assert per_example_hinge[1] == 0.0
    g = hinge_grad(SCORES)
    np.testing.assert_array_equal(g[1], 0.0)  # the car image: margins met, no pull
    assert bool(jnp.any(g[0] != 0.0)) and bool(jnp.any(g[2] != 0.0))  # margins violated
    g = ce_grad(SCORES)
    chex.assert_trees_all_close(g, jax.nn.softmax(SCORES, axis=-1) - jax.nn.one_hot(CORRECT, 3))
    assert bool(jnp.all(g[1] != 0.0))  # CE still pulls on the car image
    # Even with every score 10x larger (margins far exceeded), CE keeps pulling.
    assert bool(jnp.all(ce_grad(10 * SCORES)[1] != 0.0))
