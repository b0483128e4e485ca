"""fnet.chunking.scan_chunks (full chunks in a scan, an exact tail) and fnet._checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet._checks import check_int
from fnet.chunking import scan_chunks


@pytest.mark.parametrize("size", [1, 3, 4, 10, 50])
def test_scan_chunks_sees_every_row_once_in_order_with_an_exact_tail(size):
    x = np.arange(10, dtype=np.float32)
    seen = []

    def f(total, chunk, i):
        seen.append(chunk.shape[0])  # trace-time chunk lengths: full size, then the tail
        return total + jnp.sum(chunk), chunk * 2

    @jax.jit
    def run(x):
        return scan_chunks(f, jnp.float32(0), x, size, stack="rows")

    total, rows = run(x)
    tail = 10 % min(size, 10)
    assert float(total) == 45.0
    np.testing.assert_array_equal(rows, 2 * x)  # "rows": concatenated back to (N,)
    assert seen == [min(size, 10)] + ([tail] if tail else [])


def test_scan_chunks_stacks_one_output_per_chunk_and_passes_chunk_indices():
    x = {"a": np.arange(7.0, dtype=np.float32), "b": np.ones((7, 2), np.float32)}
    _, (sums, idx) = jax.jit(
        lambda x: scan_chunks(
            lambda c, ch, i: (c, (jnp.sum(ch["a"]) + jnp.sum(ch["b"]), i)), None, x, 3
        )
    )(x)
    np.testing.assert_array_equal(sums, [3 + 6, 12 + 6, 6 + 2])  # chunks 0-2, 3-5, 6
    np.testing.assert_array_equal(idx, [0, 1, 2])


@pytest.mark.parametrize(
    ("xs", "size", "error", "match"),
    [
        (np.zeros(4), 0, ValueError, "size must be >= 1, got 0"),
        (np.zeros(4), 2.0, TypeError, "size must be an int >= 1"),
        ((np.zeros(4), np.zeros(5)), 2, ValueError, "one leading example axis"),
        (np.zeros(0), 2, ValueError, "no rows"),
    ],
)
def test_scan_chunks_rejects_bad_sizes_and_ragged_inputs(xs, size, error, match):
    with pytest.raises(error, match=match):
        scan_chunks(lambda c, ch, i: (c, None), None, xs, size)


@pytest.mark.parametrize(
    ("value", "minimum", "error", "match"),
    [
        (True, 1, TypeError, r"n must be an int >= 1, got True of type bool"),
        (2.0, None, TypeError, r"n must be an int, got 2.0 of type float"),
        ("3", 0, TypeError, r"n must be an int >= 0, got '3'"),
        (-1, 0, ValueError, r"n must be >= 0, got -1"),
    ],
)
def test_check_int_rejects_bools_floats_strings_and_small_values(value, minimum, error, match):
    with pytest.raises(error, match=match):
        check_int(value, "n", minimum=minimum)


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "match"),
    [
        (9, {"minimum": 1, "maximum": 8}, ValueError, r"n must be in \[1, 8\], got 9"),
        (0, {"minimum": 1, "maximum": 8}, ValueError, r"n must be in \[1, 8\], got 0"),
        (5, {"maximum": 4}, ValueError, r"n must be <= 4, got 5"),
        (None, {"minimum": 1}, TypeError, r"n must be an int >= 1, got None of type NoneType"),
        (
            True,
            {"minimum": 1, "none_ok": True},
            TypeError,
            r"n must be None or an int >= 1, got True",
        ),
        (0, {"minimum": 1, "none_ok": True}, ValueError, r"n must be >= 1, got 0"),
    ],
)
def test_check_int_names_the_allowed_range_and_none(value, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_int(value, "n", **kwargs)


def test_check_int_passes_none_through_only_when_allowed():
    assert check_int(None, "n", minimum=1, none_ok=True) is None
    assert check_int(np.int32(8), "n", minimum=1, maximum=8) == 8


def test_check_int_accepts_numpy_integers_and_returns_a_python_int():
    out = check_int(np.int64(3), "n", minimum=1)
    assert out == 3 and type(out) is int
