"""Hostile and re-packaged data files: gzip bombs, overflowing headers, devices, content
verification of re-compressed official files, the search order's offline error, slow
download servers, and CIFAR-10 pickles that make arrays from nothing.

Memory is measured with ``tracemalloc`` (NumPy reports its allocations there), never
time: each hostile file would take gigabytes if read naively.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pathlib
import pickle
import shutil
import tarfile
import threading
import time
import tracemalloc

import numpy as np
import pytest

from fnet.datasets import (
    SYSTEM_DATA_DIR,
    FileSpec,
    cache,
    cifar10,
    download_file,
    fashion_mnist,
    load_mnist_format,
    mnist,
    mnist_train_or_subset,
    read_cifar10_archive,
    read_idx,
)
from fnet.datasets.mnist import FASHION_MNIST_FILES, MNIST_FILES, MNIST_SUBSET_FILES
from fnet.errors import DataError, DownloadError

pytestmark = pytest.mark.usefixtures("isolated_data_roots")

MiB = 1 << 20
DEBIAN_FASHION = SYSTEM_DATA_DIR / "fashion-mnist"  # where dataset-fashion-mnist installs


def _header(code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes()


def _peak_bytes(fn) -> int:
    """Peak traced allocation (bytes) while ``fn()`` runs; ``fn`` must raise DataError."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            fn()
        return tracemalloc.get_traced_memory()[1], e.value
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> pathlib.Path:
    """A 1 MiB gzip member chain that declares 10 MNIST images (7,840 bytes) and then
    inflates to 1 GiB of zeros (128 members of 8 MiB each)."""
    zeros = gzip.compress(bytes(8 * MiB), compresslevel=9, mtime=0)
    head = gzip.compress(_header(0x08, (10, 28, 28)) + bytes(7840), mtime=0)
    path = tmp_path_factory.mktemp("bomb") / "train5k-images-idx3-ubyte.gz"
    path.write_bytes(head + zeros * 128)
    assert path.stat().st_size < 2 * MiB
    return path


def test_gzip_bomb_is_refused_after_the_declared_size_without_inflating_it(bomb):
    peak, err = _peak_bytes(lambda: read_idx(bomb))
    assert "unexpected bytes after the data" in str(err) and str(bomb) in str(err)
    assert peak < 16 * MiB  # the whole stream would be 1 GiB


def test_gzip_bomb_is_refused_by_load_mnist_format_and_the_subset_fallback(bomb, tmp_path):
    labels = tmp_path / MNIST_SUBSET_FILES[1]
    labels.write_bytes(gzip.compress(_header(0x08, (10,)) + bytes(10)))
    peak, _ = _peak_bytes(lambda: load_mnist_format(bomb, labels))
    assert peak < 16 * MiB
    os.symlink(bomb, tmp_path / MNIST_SUBSET_FILES[0])
    peak, err = _peak_bytes(lambda: mnist_train_or_subset(data_dir=tmp_path))
    assert peak < 16 * MiB and "unexpected bytes after the data" in str(err)


def test_header_larger_than_the_limit_is_refused_before_reading_data(tmp_path):
    # A header declaring 900 MB of int32 (within 1 GiB) over 1 MiB of real data: memory
    # follows the real content, and the file is reported truncated.
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(_header(0x0C, (225_000_000,)) + bytes(MiB), mtime=0))
    peak, err = _peak_bytes(lambda: read_idx(path))
    assert "truncated data" in str(err) and peak < 8 * MiB
    with pytest.raises(DataError, match=r"more than the limit of 1,000 bytes.*max_bytes"):
        read_idx(path, max_bytes=1000)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_header_whose_byte_count_overflows_gives_a_clear_error(tmp_path, gz):
    data = _header(0x0C, (2**31, 2**31, 4))  # 2**66 bytes of int32
    path = tmp_path / "overflow.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"overflow\.idx.*73,786,976,294,838,206,464 bytes.*limit"):
        read_idx(path)


def test_empty_array_with_impossible_dimensions_gives_a_clear_error(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(_header(0x08, (0, 2**32 - 1, 2**32 - 1)))
    with pytest.raises(DataError, match=r"empty\.idx.*impossible shape"):
        read_idx(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "t10k-images-idx3-ubyte"
    os.symlink("/dev/zero", link)
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(link)


# ------------------------------------------------------------------ content verification


def _recompress(src: pathlib.Path, dst: pathlib.Path, *, flip: int | None = None) -> None:
    """Write ``src``'s decompressed bytes to ``dst`` with other gzip settings (level 1,
    another mtime, no stored name), optionally changing the byte at offset ``flip``."""
    raw = bytearray(gzip.decompress(src.read_bytes()))
    if flip is not None:
        raw[flip] ^= 1
    dst.write_bytes(gzip.compress(bytes(raw), compresslevel=1, mtime=12345))


def test_recompressed_official_files_are_accepted_and_one_changed_byte_is_not(mnist_dir, tmp_path):
    images, labels = MNIST_FILES["test"]
    d = tmp_path / "mnist"
    d.mkdir()
    _recompress(mnist_dir / images.name, d / images.name)
    _recompress(mnist_dir / labels.name, d / labels.name)
    assert (d / labels.name).read_bytes() != (mnist_dir / labels.name).read_bytes()
    ds = mnist("test", data_dir=tmp_path, download=False)
    assert ds.info["verified"] is True and ds.labels[:3].tolist() == [7, 2, 1]
    # Uncompressed copies are accepted too.
    (d / labels.name).unlink()
    (d / labels.name[:-3]).write_bytes(gzip.decompress((mnist_dir / labels.name).read_bytes()))
    assert mnist("test", data_dir=tmp_path, download=False).info["files"][1].endswith("ubyte")
    (d / labels.name[:-3]).unlink()
    _recompress(mnist_dir / labels.name, d / labels.name, flip=5000)  # one label changed
    with pytest.raises(DataError, match=r"content verification failed.*SHA-256"):
        mnist("test", data_dir=tmp_path, download=False)


def test_mnist_files_are_never_taken_for_fashion_mnist(mnist_dir):
    with pytest.raises(DataError, match="not the official"):
        fashion_mnist("test", data_dir=mnist_dir, download=False)


def test_offline_error_lists_every_place_looked_and_the_unofficial_files_found(mnist_dir):
    with pytest.raises(DownloadError) as e:
        mnist("train", data_dir=mnist_dir, download=False)
    msg = str(e.value)
    for d in cache.candidate_dirs("mnist", mnist_dir):
        assert f"    {d}\n" in msg
    if (mnist_dir / MNIST_SUBSET_FILES[0]).is_file():
        assert str(mnist_dir / MNIST_SUBSET_FILES[0]) in msg and "not the official" in msg


def test_content_digests_are_recorded_for_every_official_mnist_format_file():
    for table in (MNIST_FILES, FASHION_MNIST_FILES):
        for spec in (s for pair in table.values() for s in pair):
            assert spec.raw_size in (47040016, 60008, 7840016, 10008)
            assert len(spec.raw_sha256 or "") == 64


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install "
    "dataset-fashion-mnist puts it in /usr/share/datasets/fashion-mnist)",
)
def test_debian_fashion_mnist_is_found_in_the_system_location_and_verified(monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "SYSTEM_DATA_DIR", DEBIAN_FASHION.parent)
    train = fashion_mnist("train", download=False)
    assert train.info["files"][1] == str(DEBIAN_FASHION / "train-labels-idx1-ubyte.gz")
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert train.inputs.shape == (60000, 28, 28) and train.info["verified"] is True
    # A data_dir holding the files directly (links, not copies) works too.
    for spec in FASHION_MNIST_FILES["test"]:
        os.symlink(DEBIAN_FASHION / spec.name, tmp_path / spec.name)
    monkeypatch.setattr(cache, "SYSTEM_DATA_DIR", tmp_path / "none")
    test = fashion_mnist("test", data_dir=tmp_path, download=False)
    assert test.info["files"][0] == str(tmp_path / "t10k-images-idx3-ubyte.gz")
    assert np.bincount(test.labels).tolist() == [1000] * 10


# ------------------------------------------------------------------ slow downloads

BODY = bytes(range(256)) * 8
SPEC = FileSpec("slow.bin", len(BODY), hashlib.sha256(BODY).hexdigest(), "")


class _Slow(http.server.BaseHTTPRequestHandler):
    """``/body``: headers at once, then one byte every 20 ms; ``/headers``: the status
    line and headers themselves one byte every 20 ms."""

    def do_GET(self):
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
            if self.path.startswith("/headers")
            else b""
        )
        try:
            if not head:
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
            for b in head + BODY:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.02)
                if self.server.stop.is_set():
                    return
        except OSError:
            return

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.stop = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_server_is_cut_off_at_the_overall_deadline(slow_server, tmp_path, where):
    with pytest.raises(DownloadError, match=r"overall deadline of 0\.5 s"):
        download_file(
            SPEC, tmp_path, [f"{slow_server}/{where}/"], timeout=5, deadline=0.5, min_rate=0
        )
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_a_server_below_the_minimum_rate_is_cut_off(slow_server, tmp_path):
    with pytest.raises(DownloadError, match=r"below the minimum rate of 1000 bytes/s"):
        download_file(
            SPEC, tmp_path, [f"{slow_server}/body/"], timeout=0.3, deadline=60, min_rate=1000
        )


def test_download_limits_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="deadline must be a positive"):
        download_file(SPEC, tmp_path, [], deadline=0)
    with pytest.raises(ValueError, match="min_rate must be"):
        download_file(SPEC, tmp_path, [], min_rate=-1)


# ------------------------------------------------------------------ CIFAR-10


def _archive(path, members: dict[str, bytes], folder="cifar-10-batches-py") -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_binary_archive_is_read_record_by_record(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 3, dtype=np.uint8)
    pixels = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
    _archive(tmp_path / "b.tar.gz", {"test_batch.bin": records}, "cifar-10-batches-bin")
    ds = read_cifar10_archive(tmp_path / "b.tar.gz", "test")
    assert ds.labels.tolist() == labels.tolist() and ds.labels.dtype == np.int32
    assert ds.inputs.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(ds.inputs[1, 0, 5], pixels[1, [5, 1024 + 5, 2048 + 5]])
    _archive(tmp_path / "c.tar.gz", {"test_batch.bin": records[:-1]}, "cifar-10-batches-bin")
    with pytest.raises(DataError, match="not a whole number of 3073-byte records"):
        read_cifar10_archive(tmp_path / "c.tar.gz", "test")


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


@pytest.mark.parametrize(
    "data",
    [
        # 500,000 images of one row repeated by a zero stride: 1.5 GB from 3 kB.
        _Reduce(np.ndarray, ((500_000, 3072), np.dtype("u1"), bytes(3072), 0, (0, 1))),
        # An uninitialised array: heap bytes as images.
        _Reduce(np.ndarray, ((8, 3072), np.dtype("u1"))),
        _Reduce(_RECONSTRUCT, (np.ndarray, (8, 3072), b"B")),
    ],
    ids=["zero-strides", "uninitialised-ndarray", "uninitialised-reconstruct"],
)
def test_pickles_that_make_arrays_from_nothing_are_refused(tmp_path, data):
    payload = pickle.dumps({"data": data, "labels": [0] * 8}, protocol=2)
    _archive(tmp_path / "p.tar.gz", {"test_batch": payload})
    peak, err = _peak_bytes(lambda: read_cifar10_archive(tmp_path / "p.tar.gz", "test"))
    assert "not a valid CIFAR-10 batch pickle" in str(err) and peak < 16 * MiB


def test_deep_shared_reference_label_list_is_refused_at_once(tmp_path):
    nested: list = [0, 0]
    for _ in range(40):  # 2**40 leaves when flattened; a few hundred bytes pickled
        nested = [nested, nested]
    x = np.zeros((2, 3072), np.uint8)
    _archive(tmp_path / "d.tar.gz", {"test_batch": pickle.dumps({"data": x, "labels": nested})})
    peak, err = _peak_bytes(lambda: read_cifar10_archive(tmp_path / "d.tar.gz", "test"))
    assert "ints in [0, 10)" in str(err) and peak < 16 * MiB


def test_archive_member_declaring_a_huge_size_is_refused_before_reading(tmp_path):
    info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    info.size = 10**12
    (tmp_path / "h.tar.gz").write_bytes(gzip.compress(info.tobuf() + bytes(1024)))
    with pytest.raises(DataError, match=r"declares 1,000,000,000,000 bytes"):
        read_cifar10_archive(tmp_path / "h.tar.gz", "test")


def test_cifar10_uses_the_python_archive_only_when_the_binary_one_is_absent(tmp_path):
    x = np.zeros((2, 3072), np.uint8)
    _archive(
        tmp_path / "cifar-10-python.tar.gz",
        {"test_batch": pickle.dumps({"data": x, "labels": [1, 2]})},
    )
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: checksum verification failed"):
        cifar10("test", data_dir=tmp_path, download=False)
    shutil.copy(tmp_path / "cifar-10-python.tar.gz", tmp_path / "cifar-10-binary.tar.gz")
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz: checksum verification failed"):
        cifar10("test", data_dir=tmp_path, download=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(tmp_path / "pipe")
    with pytest.raises(DataError, match="not a regular file"):
        read_cifar10_archive(tmp_path / "pipe", "test")
