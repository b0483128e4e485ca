"""Tests of fnet.metrics: accuracy, error_count, confusion_matrix, correct."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import metrics
from fnet.errors import LabelError, ShapeError

SCORES = jnp.array(
    [
        [3.2, 5.1, -1.7],  # predicts 1
        [1.3, 4.9, 2.0],  # predicts 1
        [2.2, 2.5, -3.1],  # predicts 1
        [0.1, 0.0, 0.9],  # predicts 2
    ]
)
LABELS = jnp.array([0, 1, 2, 2])


def test_accuracy_is_float32_fraction_correct(maybe_jit):
    acc = maybe_jit(metrics.accuracy)(SCORES, LABELS)
    assert acc.dtype == jnp.float32  # also with x64 on and float64 scores
    assert acc == 0.5


def test_error_count_is_int32_number_wrong(maybe_jit):
    n = maybe_jit(metrics.error_count)(SCORES, LABELS)
    assert n.dtype == jnp.int32
    assert n == 2


def test_accuracy_is_the_same_for_logits_and_probabilities():
    probs = jax.nn.softmax(SCORES, axis=-1)
    assert metrics.accuracy(probs, LABELS) == metrics.accuracy(SCORES, LABELS)


def test_correct_marks_each_example():
    np.testing.assert_array_equal(metrics.correct(SCORES, LABELS), [False, True, False, True])


def test_confusion_matrix_rows_are_true_classes_columns_predictions(maybe_jit):
    cm = maybe_jit(metrics.confusion_matrix)(SCORES, LABELS)
    assert cm.dtype == jnp.int32
    chex.assert_trees_all_equal(cm, jnp.array([[0, 1, 0], [0, 1, 0], [0, 1, 1]], jnp.int32))
    assert int(jnp.trace(cm)) == SCORES.shape[0] - int(metrics.error_count(SCORES, LABELS))


def test_ties_go_to_the_lowest_class_index():
    assert metrics.accuracy(jnp.zeros((2, 3)), jnp.array([0, 1])) == 0.5


def test_out_of_range_labels_count_as_errors_and_are_dropped_from_confusion_matrix():
    labels = jnp.array([1, 1, 7, -1])
    assert jax.jit(metrics.error_count)(SCORES, labels) == 2  # the last two
    assert int(jnp.sum(jax.jit(metrics.confusion_matrix)(SCORES, labels))) == 2


def test_float_labels_raise_label_error():
    with pytest.raises(LabelError, match="integer class ids"):
        metrics.accuracy(SCORES, jnp.array([0.0, 1.0, 2.0, 2.0]))
    with pytest.raises(LabelError, match="argmax"):
        metrics.accuracy(SCORES, jax.nn.one_hot(LABELS, 3))


def test_wrong_shapes_raise_shape_error():
    with pytest.raises(ShapeError, match=r"\(N, C\)"):
        metrics.error_count(SCORES[0], LABELS[:1])
    with pytest.raises(ShapeError, match=r"\(4,\).*\(3,\)"):
        metrics.error_count(SCORES, LABELS[:3])


def test_correct_on_binary_scores_predicts_the_sign(maybe_jit):
    scores = jnp.array([2.0, -1.0, 0.5, -0.3, 0.0])
    labels = jnp.array([1, -1, -1, 1, -1])
    right = maybe_jit(metrics.correct)(scores, labels)
    np.testing.assert_array_equal(right, [True, True, False, False, True])


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        (SCORES, LABELS, True),  # class ids for (N, C) scores
        (SCORES[:, 0], jnp.array([1, -1, 1, -1]), True),  # ±1 labels for (N,) scores
        (SCORES, LABELS.astype(jnp.float32), False),  # float targets: regression
        (SCORES, jax.nn.one_hot(LABELS, 3), False),  # one-hot rows
        (SCORES, LABELS[:3], False),  # another N
        (SCORES[None], LABELS, False),  # scores of rank 3
    ],
)
def test_are_class_labels_reads_shapes_and_dtypes(scores, labels, expected):
    assert metrics.are_class_labels(scores, labels) is expected
    traced = jax.jit(lambda s, y: jnp.asarray(metrics.are_class_labels(s, y)))(scores, labels)
    assert bool(traced) is expected  # decided from shapes and dtypes, also under jit


def test_correct_rejects_binary_scores_with_labels_of_another_length():
    with pytest.raises(ShapeError, match=r"\(N,\) = \(4,\)"):
        metrics.correct(SCORES[:, 0], jnp.array([1, -1]))
