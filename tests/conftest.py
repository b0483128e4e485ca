"""Shared pytest fixtures and strictness settings for fnet's tests.

Like Equinox's test suite, silent rank promotion raises in tests, so shape bugs that
broadcasting would hide show up at once. ``jax_enable_x64`` is switched on so that
gradient checks can run in float64; fnet itself keeps float32 wherever its inputs are
float32, and the conformance tests check that.
"""

from __future__ import annotations

import pathlib

import jax
import pytest

from fnet.datasets import cache, find_dataset_dir

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


#: The project machines' data folder beside the repository (``../shared/data``).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    """A folder with the official MNIST test files, found by fnet's own search rule
    (``fnet.datasets.find_dataset_dir``) with ``../shared/data`` as the data_dir;
    skips the test when absent."""
    d = find_dataset_dir("mnist", ["t10k-images-idx3-ubyte.gz"], SHARED_DATA)
    if d is None:
        pytest.skip("real MNIST files not found (set FNET_DATA_DIR or place ../shared/data/mnist)")
    return d


@pytest.fixture
def isolated_data_roots(tmp_path_factory, monkeypatch) -> None:
    """Make the loaders see no data but what a test passes as data_dir: FNET_DATA_DIR
    unset, the per-user cache and the system location pointed at empty folders."""
    empty = tmp_path_factory.mktemp("no-data")
    monkeypatch.delenv("FNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty / "cache"))
    monkeypatch.setattr(cache, "SYSTEM_DATA_DIR", empty / "system")


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
    """Run a test twice: once calling functions eagerly, once under ``jax.jit``.

    Use as ``f = maybe_jit(f)``; static arguments can be passed as ``static_argnames``.
    """

    def wrap(fn, **jit_kwargs):
        return jax.jit(fn, **jit_kwargs) if request.param else fn

    return wrap
