"""The spiral generator of SEEDS.md §1."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fnet.datasets import spiral


def test_spiral_shapes_and_dtypes():
    ds = spiral(50, key=jax.random.key(0))
    assert ds.inputs.shape == (150, 2) and ds.inputs.dtype == np.float32
    assert ds.labels.shape == (150,) and ds.labels.dtype == np.int32
    assert ds.info["n_classes"] == 3 and ds.info["t"].dtype == np.float32


# Sizes are chosen so that every test draws 150 points: one compilation of the draw.
@pytest.mark.parametrize(("n_per_class", "n_classes"), [(75, 2), (50, 3), (30, 5)])
def test_spiral_classes_are_balanced(n_per_class, n_classes):
    ds = spiral(n_per_class, n_classes, key=jax.random.key(1))
    assert np.bincount(ds.labels).tolist() == [n_per_class] * n_classes


@pytest.mark.parametrize("noise_on", ["angle", "coords"])
def test_spiral_is_deterministic_for_a_key_and_differs_between_keys(noise_on):
    a = spiral(50, key=jax.random.key(7), noise_on=noise_on)
    b = spiral(50, key=jax.random.key(7), noise_on=noise_on)
    c = spiral(50, key=jax.random.key(8), noise_on=noise_on)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.allclose(a.inputs, c.inputs)


def test_spiral_radius_is_t_in_unit_interval_with_angle_noise():
    ds = spiral(50, key=jax.random.key(2), noise=0.5)
    t = ds.info["t"]
    assert t.min() == 0.0 and t.max() == 1.0
    np.testing.assert_allclose(np.linalg.norm(ds.inputs, axis=1), t, atol=1e-6)
    np.testing.assert_allclose(t[:50], np.linspace(0, 1, 50), atol=1e-7)


def test_spiral_without_noise_follows_the_formula_exactly():
    C, n = 3, 50
    ds = spiral(n, C, noise=0.0, key=jax.random.key(0))
    t = np.tile(np.linspace(0, 1, n), C)
    c = np.repeat(np.arange(1, C + 1), n)
    a = 2 * np.pi / C * (2 * t + c - 1)
    expected = t[:, None] * np.stack([np.sin(a), np.cos(a)], axis=1)
    np.testing.assert_allclose(ds.inputs, expected, atol=1e-6)
    np.testing.assert_array_equal(ds.labels, c - 1)


def test_coordinate_noise_has_the_requested_standard_deviation_around_the_clean_point():
    clean = spiral(50, noise=0.0, key=jax.random.key(0)).inputs
    noisy = spiral(50, noise=0.2, key=jax.random.key(3), noise_on="coords")
    resid = noisy.inputs - clean
    assert abs(resid.std() - 0.2) < 0.03 and abs(resid.mean()) < 0.03
    assert np.linalg.norm(noisy.inputs, axis=1).max() > 1.0  # noise can push points out


def test_spiral_rejects_bad_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="noise_on"):
        spiral(5, key=key, noise_on="radius")
    with pytest.raises(ValueError, match="spiral: n_per_class must be >= 1, got 0"):
        spiral(0, key=key)
    with pytest.raises(ValueError, match="spiral: n_classes must be >= 1, got 0"):
        spiral(5, n_classes=0, key=key)
    with pytest.raises(TypeError, match=r"spiral: n_per_class must be an int >= 1, got 5\.0"):
        spiral(5.0, key=key)
    with pytest.raises(TypeError, match="spiral: n_classes must be an int >= 1, got True"):
        spiral(5, n_classes=True, key=key)
    with pytest.raises(ValueError, match="noise"):
        spiral(5, noise=-0.1, key=key)
