"""The real MNIST files in ../shared/data/mnist (or $FNET_DATA_DIR); skipped when absent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fnet.datasets import load_mnist_format, mnist, mnist_train_or_subset
from fnet.datasets.download import file_digests
from fnet.datasets.mnist import MNIST_FILES, MNIST_SUBSET_FILES
from fnet.errors import DownloadError

pytestmark = [pytest.mark.data, pytest.mark.usefixtures("isolated_data_roots")]

TEST_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    return mnist("test", data_dir=mnist_dir, download=False)


def test_checksum_table_matches_the_official_t10k_files(mnist_dir):
    for spec in MNIST_FILES["test"]:
        size, sha256, md5 = file_digests(mnist_dir / spec.name)
        assert (size, sha256, md5) == (spec.size, spec.sha256, spec.md5)


def test_mnist_test_split_shapes_dtypes_and_pixel_range(mnist_test):
    x, y = mnist_test.inputs, mnist_test.labels
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int32
    assert x.min() == 0 and x.max() == 255
    assert mnist_test.info["verified"] is True and mnist_test.info["subset"] is False
    assert mnist_test.info["split"] == "test" and mnist_test.info["n_classes"] == 10


def test_mnist_test_label_histogram_matches_the_published_counts(mnist_test):
    assert np.bincount(mnist_test.labels, minlength=10).tolist() == TEST_HISTOGRAM


def test_unverified_loader_reads_the_same_arrays_as_the_verified_one(mnist_dir, mnist_test):
    ds = load_mnist_format(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz"
    )
    assert ds.info["verified"] is False
    np.testing.assert_array_equal(ds.inputs, mnist_test.inputs)
    np.testing.assert_array_equal(ds.labels, mnist_test.labels)


def test_train_or_subset_falls_back_to_the_5k_subset_when_official_files_are_absent(mnist_dir):
    if any((mnist_dir / s.name).is_file() for s in MNIST_FILES["train"]):
        pytest.skip("the official training files are present here")
    if not (mnist_dir / MNIST_SUBSET_FILES[0]).is_file():
        pytest.skip("train5k subset files not present")
    ds = mnist_train_or_subset(data_dir=mnist_dir)
    assert ds.inputs.shape == (5000, 28, 28) and ds.inputs.dtype == np.uint8
    assert ds.labels.dtype == np.int32
    assert np.bincount(ds.labels, minlength=10).tolist() == [500] * 10
    assert ds.info["subset"] is True and ds.info["verified"] is False
    assert ds.info["name"] == "mnist" and ds.info["split"] == "train"
    assert ds.inputs.max() == 255


def test_train_or_subset_warns_and_uses_subset_when_download_fails(mnist_dir, tmp_path):
    if not (mnist_dir / MNIST_SUBSET_FILES[0]).is_file():
        pytest.skip("train5k subset files not present")
    for name in MNIST_SUBSET_FILES:
        shutil.copy(mnist_dir / name, tmp_path / name)
    with pytest.warns(UserWarning, match="5,000-image subset"):
        ds = mnist_train_or_subset(tmp_path, download=True, mirrors=["http://127.0.0.1:1/"])
    assert ds.info["subset"] is True and len(ds.inputs) == 5000


def test_train_or_subset_without_any_files_raises_download_error_naming_both_options(tmp_path):
    with pytest.raises(DownloadError) as e:
        mnist_train_or_subset(data_dir=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train5k-images-idx3-ubyte.gz" in msg
    assert "FNET_DATA_DIR" in msg
