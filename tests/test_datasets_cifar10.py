"""The CIFAR-10 parser on small fake archives the tests build (no download), and its
refusal to run code from a crafted pickle."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from fnet.datasets import cifar10, read_cifar10_archive
from fnet.errors import DataError, DownloadError

N_PER_BATCH = 4

pytestmark = pytest.mark.usefixtures("isolated_data_roots")


def _batch(seed: int, n: int = N_PER_BATCH) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def _write_archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _pickled(x, y, *, protocol=2, bytes_keys=False) -> bytes:
    keys = [b"data", b"labels", b"batch_label"] if bytes_keys else ["data", "labels", "batch_label"]
    return pickle.dumps({keys[0]: x, keys[1]: y, keys[2]: "fake"}, protocol=protocol)


@pytest.fixture
def fake_archive(tmp_path):
    members = {f"data_batch_{i}": _pickled(*_batch(i), bytes_keys=i % 2 == 0) for i in range(1, 6)}
    # As written by Python 2 / NumPy 1 (the official files): numpy.core, not numpy._core.
    old_style = _pickled(*_batch(3)).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in old_style
    members["data_batch_3"] = old_style
    members["test_batch"] = _pickled(*_batch(99), protocol=4)
    members["batches.meta"] = pickle.dumps({"label_names": ["airplane"]}, protocol=2)
    path = tmp_path / "cifar-10-python.tar.gz"
    _write_archive(path, members)
    return path


def test_parser_returns_nhwc_uint8_images_and_int32_labels(fake_archive):
    ds = read_cifar10_archive(fake_archive, "train")
    assert ds.inputs.shape == (5 * N_PER_BATCH, 32, 32, 3) and ds.inputs.dtype == np.uint8
    assert ds.labels.shape == (5 * N_PER_BATCH,) and ds.labels.dtype == np.int32
    x1, y1 = _batch(1)
    np.testing.assert_array_equal(ds.labels[:N_PER_BATCH], y1)
    np.testing.assert_array_equal(ds.labels[2 * N_PER_BATCH : 3 * N_PER_BATCH], _batch(3)[1])
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    img = x1[2]
    np.testing.assert_array_equal(ds.inputs[2, :, :, 0], img[:1024].reshape(32, 32))
    np.testing.assert_array_equal(ds.inputs[2, :, :, 2], img[2048:].reshape(32, 32))
    assert ds.inputs[2, 0, 1, 1] == img[1024 + 1]
    assert ds.info["verified"] is False and ds.info["class_names"][9] == "truck"


def test_parser_reads_test_split_from_test_batch(fake_archive):
    ds = read_cifar10_archive(fake_archive, "test")
    np.testing.assert_array_equal(ds.labels, _batch(99)[1])
    assert ds.info["split"] == "test"


def test_crafted_pickle_naming_os_system_is_rejected_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _write_archive(tmp_path / "evil.tar.gz", {"test_batch": pickle.dumps({"data": Evil()})})
    with pytest.raises(DataError, match=r"evil\.tar\.gz:cifar-10-batches-py/test_batch.*system"):
        read_cifar10_archive(tmp_path / "evil.tar.gz", "test")
    assert not marker.exists()


def test_pickle_calling_builtins_eval_is_rejected(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    _write_archive(tmp_path / "e.tar.gz", {"test_batch": pickle.dumps({"data": Evil()})})
    with pytest.raises(DataError, match=r"builtins\.eval"):
        read_cifar10_archive(tmp_path / "e.tar.gz", "test")


def test_archive_missing_a_batch_raises_data_error_naming_the_member(tmp_path):
    _write_archive(tmp_path / "a.tar.gz", {"data_batch_1": _pickled(*_batch(1))})
    with pytest.raises(DataError, match=r"a\.tar\.gz.*no file cifar-10-batches-py/data_batch_2"):
        read_cifar10_archive(tmp_path / "a.tar.gz", "train")


def test_truncated_archive_raises_data_error_naming_the_file(fake_archive, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(fake_archive.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cut\.tar\.gz.*(damaged|truncated)"):
        read_cifar10_archive(cut, "train")


def test_batch_with_wrong_shape_raises_data_error(tmp_path):
    x = np.zeros((2, 1024), np.uint8)
    _write_archive(tmp_path / "s.tar.gz", {"test_batch": _pickled(x, [0, 1])})
    with pytest.raises(DataError, match=r"uint8 array \(N, 3072\)"):
        read_cifar10_archive(tmp_path / "s.tar.gz", "test")


def test_batch_with_label_count_mismatch_or_bad_label_raises_data_error(tmp_path):
    x, _ = _batch(0, 2)
    _write_archive(tmp_path / "c.tar.gz", {"test_batch": _pickled(x, [0])})
    with pytest.raises(DataError, match="'labels' must be a flat list of 2 ints"):
        read_cifar10_archive(tmp_path / "c.tar.gz", "test")
    _write_archive(tmp_path / "r.tar.gz", {"test_batch": _pickled(x, [0, 10])})
    with pytest.raises(DataError, match=r"ints in \[0, 10\)"):
        read_cifar10_archive(tmp_path / "r.tar.gz", "test")


def test_cifar10_rejects_an_archive_that_is_not_the_official_one(fake_archive):
    root = fake_archive.parent
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz.*checksum verification failed"):
        cifar10("test", data_dir=root, download=False)
    assert fake_archive.exists()  # left alone


def test_cifar10_without_archive_or_internet_names_the_archive_and_folder(tmp_path):
    with pytest.raises(DownloadError) as e:
        cifar10("train", data_dir=tmp_path, mirrors=["http://127.0.0.1:1/"])
    msg = str(e.value)
    assert "cifar-10-binary.tar.gz" in msg and str(tmp_path / "cifar10") in msg
    assert "FNET_DATA_DIR" in msg
