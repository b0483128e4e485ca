"""Preprocessing functions and the eager label check used on user-supplied arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet.datasets import (
    Dataset,
    check_labels,
    fit_standardizer,
    flatten,
    one_hot,
    scale_pixels,
    shuffle,
    spiral,
    standardize,
    train_val_split,
)
from fnet.errors import LabelError


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4), dtype=np.uint8)


def test_scale_pixels_maps_uint8_to_float32_unit_interval():
    x = np.array([[0, 51, 255]], np.uint8)
    y = scale_pixels(x)
    assert y.dtype == np.float32 and isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, [[0.0, 0.2, 1.0]], rtol=1e-7)


def test_scale_pixels_works_under_jit_and_keeps_float32():
    y = jax.jit(scale_pixels)(jnp.asarray(_images()))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, _images() / 255.0, rtol=1e-6)


def test_standardizer_uses_training_statistics_only():
    train = scale_pixels(_images(50, seed=1))
    test = scale_pixels(_images(20, seed=2)) + 0.5
    mean, std = fit_standardizer(train)
    assert mean.shape == (1, 4, 4) and mean.dtype == np.float32
    z_train = standardize(train, mean, std)
    np.testing.assert_allclose(z_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train.std(0), 1, atol=1e-4)
    z_test = standardize(test, mean, std)
    np.testing.assert_allclose(z_test, (test - train.mean(0)) / train.std(0), rtol=1e-4, atol=1e-5)
    assert z_test.mean() > 1.0  # the shift of the test data is not standardized away


def test_standardizer_per_channel_and_global_and_constant_features():
    x = np.random.default_rng(0).normal(3.0, 2.0, (40, 5, 5, 3)).astype(np.float32)
    x[:, 0, 0, :] = 7.0
    s = fit_standardizer(x, axis=(0, 1, 2))
    assert s.mean.shape == (1, 1, 1, 3)
    assert fit_standardizer(x, axis=None).mean.shape == (1, 1, 1, 1)
    z = standardize(x, *fit_standardizer(x))  # constant pixel: std replaced by 1, no NaN
    assert np.isfinite(z).all() and np.all(z[:, 0, 0, :] == 0)
    with pytest.raises(ValueError, match="axis must include 0"):
        fit_standardizer(x, axis=(1, 2))


def test_standardize_under_jit_broadcasts_without_rank_promotion():
    x = jnp.asarray(scale_pixels(_images()))
    s = fit_standardizer(np.asarray(x))
    z = jax.jit(standardize)(x, s.mean[0], s.std[0])  # lower-rank statistics are padded
    assert z.shape == x.shape and z.dtype == jnp.float32
    np.testing.assert_allclose(z, standardize(np.asarray(x), *s), rtol=1e-5, atol=1e-5)


def test_flatten_keeps_the_example_axis():
    assert flatten(_images()).shape == (6, 16)
    assert flatten(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 3072)
    assert jax.jit(flatten)(jnp.zeros((3, 2, 2))).shape == (3, 4)


def test_one_hot_numpy_and_jax():
    y = one_hot(np.array([2, 0, 1], np.int32), 3)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.eye(3, dtype=np.float32)[[2, 0, 1]])
    yj = jax.jit(one_hot, static_argnums=1)(jnp.array([2, 0, 1]), 3)
    np.testing.assert_array_equal(yj, y)


def test_one_hot_rejects_out_of_range_numpy_labels_eagerly():
    with pytest.raises(LabelError, match=r"outside \[0, 3\)"):
        one_hot(np.array([0, 3]), 3)


def test_validation_helper_rejects_user_labels_outside_range():
    with pytest.raises(LabelError, match=r"labels\[1\]=-1"):
        check_labels(np.array([0, -1, 2]), 3)
    with pytest.raises(LabelError, match=r"labels\[2\]=10"):
        check_labels(np.array([0, 9, 10]), 10)
    assert check_labels(np.array([0, 9], np.uint8), 10).dtype == np.int32


def test_train_val_split_is_deterministic_disjoint_and_complete():
    # N = 150 in every split/shuffle test here: one compilation of the permutation.
    tr, va = train_val_split(150, 0.2, key=jax.random.key(0))
    tr2, va2 = train_val_split(150, 0.2, key=jax.random.key(0))
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 30 and len(tr) == 120
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(150))
    tr3, _ = train_val_split(150, 0.2, key=jax.random.key(1))
    assert not np.array_equal(tr, tr3)


def test_train_val_split_of_a_dataset_keeps_pairs_and_metadata_together():
    ds = spiral(50, key=jax.random.key(0))
    tr, va = train_val_split(ds, 0.2, key=jax.random.key(5))
    assert isinstance(tr, Dataset) and len(va.inputs) == 30 and len(tr.inputs) == 120
    assert va.inputs.dtype == np.float32 and va.labels.dtype == np.int32
    np.testing.assert_allclose(np.linalg.norm(va.inputs, axis=1), va.info["t"], atol=1e-6)
    assert tr.info["split"] == "all[train]" and va.info["split"] == "all[val]"
    assert ds.info["split"] == "all"  # the input is not modified


def test_train_val_split_of_arrays_and_bad_fraction():
    x, y = np.arange(150)[:, None] * np.ones((1, 3)), np.arange(150)
    (xt, yt), (xv, yv) = train_val_split((x, y), 0.3, key=jax.random.key(0))
    np.testing.assert_array_equal(xt[:, 0], yt)
    np.testing.assert_array_equal(xv[:, 0], yv)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(10, 1.0, key=jax.random.key(0))


def test_shuffle_applies_one_permutation_deterministically():
    x, y = np.arange(300).reshape(150, 2), np.arange(150)
    xs, ys = shuffle((x, y), key=jax.random.key(3))
    np.testing.assert_array_equal(xs[:, 0] // 2, ys)
    assert sorted(ys.tolist()) == list(range(150))
    assert not np.array_equal(ys, y)
    xs2, _ = shuffle((x, y), key=jax.random.key(3))
    np.testing.assert_array_equal(xs, xs2)
