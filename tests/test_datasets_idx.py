"""fnet's IDX reader and writer, and the MNIST-format loader's checks of bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from fnet.datasets import load_mnist_format, read_idx, write_idx
from fnet.datasets.idx import IDX_DTYPES, parse_idx
from fnet.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (4, 3, 2), (2, 3, 2, 5)]


def _header(code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("suffix", [".gz", ""], ids=["gzip", "plain"])
def test_idx_roundtrip_preserves_values_shape_and_dtype(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    out = read_idx(path)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # the result is a writable copy


def test_idx_reader_follows_the_format_big_endian_by_hand():
    # type 0x0B (int16), 1-D of 2 elements: 258 = 0x0102 and -2 = 0xFFFE, big-endian.
    data = _header(0x0B, (2,)) + bytes([0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(data), np.array([258, -2], np.int16))


def test_gzip_is_detected_from_content_not_from_the_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "no-suffix"
    write_idx(path, arr, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), arr)


def test_every_format_type_code_is_supported():
    assert sorted(IDX_DTYPES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


def test_truncated_idx_file_raises_data_error_naming_the_file(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    full = _header(0x08, (10, 4, 4)) + bytes(160)
    path.write_bytes(gzip.compress(full[:-17]))
    with pytest.raises(DataError, match=r"images-idx3-ubyte\.gz.*truncated data.*160.*143"):
        read_idx(path)


def test_truncated_gzip_stream_raises_data_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_header(0x08, (100,)) + bytes(100))[:-12])
    with pytest.raises(DataError, match=r"cut\.gz.*gzip.*download it again"):
        read_idx(path)


def test_truncated_header_raises_data_error(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(_header(0x08, (2, 3))[:9])
    with pytest.raises(DataError, match=r"h\.idx.*truncated header"):
        read_idx(path)


def test_wrong_magic_number_raises_data_error_naming_file_and_expected_magic(tmp_path):
    path = tmp_path / "not-idx.gz"
    path.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(64)))
    with pytest.raises(DataError, match=r"not-idx\.gz.*wrong magic number 0x89504E47.*0x00000803"):
        read_idx(path)


def test_unknown_type_code_raises_data_error(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(_header(0x0A, (2,)) + bytes(2))
    with pytest.raises(DataError, match=r"t\.idx.*unknown IDX type code 0x0A"):
        read_idx(path)


def test_zero_dimensions_raise_data_error():
    with pytest.raises(DataError, match="0 dimensions"):
        parse_idx(bytes([0, 0, 8, 0]), "z")


def test_bytes_after_the_data_raise_data_error():
    with pytest.raises(DataError, match=r"x\.idx: 3 unexpected bytes after the data"):
        parse_idx(_header(0x08, (4,)) + bytes(7), "x.idx")


def test_too_short_file_raises_data_error():
    with pytest.raises(DataError, match=r"e\.idx.*only 2 bytes"):
        parse_idx(b"\x00\x00", "e.idx")


def test_missing_file_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"nope\.gz"):
        read_idx(tmp_path / "nope.gz")


def test_writer_rejects_dtypes_the_format_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "b.idx", np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "s.idx", np.zeros((), np.uint8))


# ---- the MNIST-format loader: cross-checks of an images/labels pair ----------------


def _pair(tmp_path, images, labels):
    ip, lp = tmp_path / "x-images-idx3-ubyte.gz", tmp_path / "x-labels-idx1-ubyte.gz"
    write_idx(ip, images)
    write_idx(lp, labels)
    return ip, lp


def test_load_mnist_format_returns_unverified_uint8_images_and_int32_labels(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28).astype(np.uint8)
    ip, lp = _pair(tmp_path, images, np.array([0, 9, 4], np.uint8))
    ds = load_mnist_format(ip, lp)
    assert ds.inputs.shape == (3, 28, 28) and ds.inputs.dtype == np.uint8
    assert ds.labels.dtype == np.int32
    np.testing.assert_array_equal(ds.labels, [0, 9, 4])
    assert ds.info["verified"] is False and ds.info["subset"] is True
    assert ds.info["files"] == [str(ip), str(lp)]


def test_label_count_different_from_image_count_raises_data_error_naming_both_files(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"x-images.*5 images.*x-labels.*4 labels"):
        load_mnist_format(ip, lp)


def test_wrong_image_dimensions_raise_data_error_naming_the_file(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((2, 28, 27), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(
        DataError, match=r"x-images-idx3-ubyte\.gz: images are 28x27, expected 28x28"
    ):
        load_mnist_format(ip, lp)
    assert load_mnist_format(ip, lp, image_shape=None).inputs.shape == (2, 28, 27)


def test_images_of_wrong_rank_raise_data_error(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((2, 784), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"x-images.*3-D uint8.*got 2-D"):
        load_mnist_format(ip, lp)


def test_swapped_images_and_labels_files_raise_data_error(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="labels file"):
        load_mnist_format(lp, ip)


def test_labels_out_of_range_in_a_file_raise_data_error_naming_the_file(tmp_path):
    ip, lp = _pair(tmp_path, np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 2], np.uint8))
    with pytest.raises(DataError, match=r"x-labels-idx1-ubyte\.gz.*outside \[0, 10\)"):
        load_mnist_format(ip, lp)
    assert load_mnist_format(ip, lp, n_classes=11).info["n_classes"] == 11
