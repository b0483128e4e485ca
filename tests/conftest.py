"""Shared pytest fixtures and strictness settings for fnet's tests.

Like Equinox's test suite, silent rank promotion raises in tests, so shape bugs that
broadcasting would hide show up at once. ``jax_enable_x64`` is switched on so that
gradient checks can run in float64; fnet itself keeps float32 wherever its inputs are
float32, and the conformance tests check that.
"""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shared_mnist_dir() -> pathlib.Path | None:
    """The directory with the real MNIST files, if present: $FNET_DATA_DIR/mnist,
    $FNET_DATA_DIR, or ../shared/data/mnist beside the repository."""
    candidates = []
    env = os.environ.get("FNET_DATA_DIR")
    if env:
        candidates += [pathlib.Path(env) / "mnist", pathlib.Path(env)]
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "mnist")
    for c in candidates:
        if (c / "t10k-images-idx3-ubyte.gz").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    """Path to a directory with the real MNIST files; skips the test when absent."""
    d = _shared_mnist_dir()
    if d is None:
        pytest.skip("real MNIST files not found (set FNET_DATA_DIR or place ../shared/data/mnist)")
    return d


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
    """Run a test twice: once calling functions eagerly, once under ``jax.jit``.

    Use as ``f = maybe_jit(f)``; static arguments can be passed as ``static_argnames``.
    """

    def wrap(fn, **jit_kwargs):
        return jax.jit(fn, **jit_kwargs) if request.param else fn

    return wrap
