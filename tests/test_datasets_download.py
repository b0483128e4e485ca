"""Downloads against a local HTTP server on 127.0.0.1 (never the internet), the
data-directory order, and the cache's protection against bad files."""

from __future__ import annotations

import hashlib
import http.server
import os
import pathlib
import shutil
import threading

import pytest

from fnet.datasets import (
    FileSpec,
    cache,
    candidate_dirs,
    download_file,
    find_dataset_dir,
    mnist,
    resolve_data_dir,
    verify_file,
)
from fnet.datasets.mnist import MNIST_FILES
from fnet.errors import DataError, DownloadError

GOOD = bytes(range(256)) * 40
SPEC = FileSpec(
    "data.bin",
    len(GOOD),
    hashlib.sha256(GOOD).hexdigest(),
    hashlib.md5(GOOD).hexdigest(),
)
UNREACHABLE = "http://127.0.0.1:1/"  # nothing listens on port 1

pytestmark = pytest.mark.usefixtures("isolated_data_roots")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``/good/<name>``, ``/corrupt/<name>`` (wrong bytes), ``/midway/<name>``
    (Content-Length of the whole file, then half of it and a closed connection) and
    ``/files/<name>`` from ``server.files``; anything else is 404."""

    def do_GET(self):
        _, mode, name = self.path.split("/", 2)
        self.server.requests.append(self.path)
        if mode == "good" and name == SPEC.name:
            body, send = GOOD, GOOD
        elif mode == "corrupt" and name == SPEC.name:
            body = send = GOOD[:-1] + b"X"
        elif mode == "midway" and name == SPEC.name:
            body, send = GOOD, GOOD[: len(GOOD) // 2]
        elif mode == "files" and name in self.server.files:
            body = send = self.server.files[name].read_bytes()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(send)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (free port); yields its base URL's server."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests = []
    srv.files = {}
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _leftovers(d: pathlib.Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_good_download_is_verified_and_moved_into_place(server, tmp_path):
    path = download_file(SPEC, tmp_path / "cache", [server.url + "/good/"], timeout=5)
    assert path == tmp_path / "cache" / "data.bin"
    assert path.read_bytes() == GOOD
    assert _leftovers(tmp_path / "cache") == ["data.bin"]  # no temporary file left


def test_corrupt_download_leaves_no_file_in_the_cache(server, tmp_path):
    with pytest.raises(DownloadError, match=r"data\.bin.*failed verification.*SHA-256") as e:
        download_file(SPEC, tmp_path, [server.url + "/corrupt/"], timeout=5)
    assert str(tmp_path) in str(e.value)
    assert _leftovers(tmp_path) == []


def test_corrupt_download_never_overwrites_an_existing_good_file(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(GOOD)
    before = (tmp_path / "data.bin").stat().st_mtime_ns
    with pytest.raises(DownloadError):
        download_file(SPEC, tmp_path, [server.url + "/corrupt/"], timeout=5)
    assert (tmp_path / "data.bin").read_bytes() == GOOD
    assert (tmp_path / "data.bin").stat().st_mtime_ns == before
    assert _leftovers(tmp_path) == ["data.bin"]


def test_download_interrupted_midway_leaves_no_file(server, tmp_path):
    with pytest.raises(DownloadError, match=r"midway/data\.bin.*(IncompleteRead|truncated)"):
        download_file(SPEC, tmp_path, [server.url + "/midway/"], timeout=5)
    assert _leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order_until_one_serves_a_verified_file(server, tmp_path):
    mirrors = [server.url + "/missing/", server.url + "/corrupt/", server.url + "/good/"]
    path = download_file(SPEC, tmp_path, mirrors, timeout=5)
    assert path.read_bytes() == GOOD
    assert server.requests == ["/missing/data.bin", "/corrupt/data.bin", "/good/data.bin"]


def test_http_404_is_reported_per_mirror(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/nothing/data\.bin: HTTP 404"):
        download_file(SPEC, tmp_path, [server.url + "/nothing/"], timeout=5)


def test_unreachable_mirror_gives_download_error_naming_files_folder_and_env_var(tmp_path):
    with pytest.raises(DownloadError) as e:
        mnist("train", data_dir=tmp_path, download=True, mirrors=[UNREACHABLE])
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "mnist") in msg
    assert "FNET_DATA_DIR" in msg and "data_dir=" in msg
    assert "127.0.0.1:1" in msg
    assert "Traceback" not in msg
    assert _leftovers(tmp_path / "mnist") == []
    assert isinstance(e.value, OSError)  # DownloadError is also an OSError


def test_download_false_with_missing_files_names_them_without_touching_the_network(tmp_path):
    with pytest.raises(DownloadError, match="download=False") as e:
        mnist("test", data_dir=tmp_path, download=False, mirrors=[UNREACHABLE])
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "FNET_DATA_DIR" in msg and str(tmp_path / "mnist") in msg
    assert not (tmp_path / "mnist").exists()


def test_cached_file_with_wrong_checksum_raises_data_error_and_is_left_alone(tmp_path):
    spec = MNIST_FILES["test"][1]
    bad = tmp_path / "mnist" / spec.name
    bad.parent.mkdir()
    bad.write_bytes(b"\x00" * spec.size)
    with pytest.raises(DataError) as e:
        mnist("test", data_dir=tmp_path, download=True, mirrors=[UNREACHABLE])
    msg = str(e.value)
    assert str(bad) in msg and "not the official t10k-labels-idx1-ubyte.gz" in msg
    assert "Delete it" in msg
    assert "load_mnist_format" in msg  # how to load files that are not the official ones
    assert bad.read_bytes() == b"\x00" * spec.size


def test_truncated_cached_file_is_reported_as_truncated(tmp_path):
    (tmp_path / "data.bin").write_bytes(GOOD[:100])
    with pytest.raises(DataError, match=r"data\.bin.*100 bytes.*truncated"):
        verify_file(tmp_path / "data.bin", SPEC)


def test_official_mnist_downloads_verifies_and_loads_from_a_local_mirror(
    server, tmp_path, mnist_dir
):
    for spec in MNIST_FILES["test"]:
        server.files[spec.name] = mnist_dir / spec.name
    ds = mnist("test", data_dir=tmp_path, mirrors=[server.url + "/files/"])
    assert ds.inputs.shape == (10000, 28, 28) and ds.info["verified"] is True
    assert _leftovers(tmp_path / "mnist") == sorted(s.name for s in MNIST_FILES["test"])
    # A second call uses the cache: no new requests.
    n = len(server.requests)
    mnist("test", data_dir=tmp_path, mirrors=[server.url + "/files/"])
    assert len(server.requests) == n


def test_data_dir_argument_beats_env_var_which_beats_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FNET_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("FNET_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "fnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.name != "nt":
        assert resolve_data_dir() == tmp_path / "home" / ".cache" / "fnet"


def test_env_var_folder_is_used_by_the_loaders(tmp_path, monkeypatch, mnist_dir):
    for spec in MNIST_FILES["test"]:
        shutil.copy(mnist_dir / spec.name, tmp_path / spec.name)  # flat layout
    monkeypatch.setenv("FNET_DATA_DIR", str(tmp_path))
    ds = mnist("test", download=False)
    assert ds.info["files"][0] == str(tmp_path / "t10k-images-idx3-ubyte.gz")


def test_search_order_is_argument_env_user_cache_system_each_with_and_without_subfolder(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("FNET_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache, "SYSTEM_DATA_DIR", tmp_path / "sys")
    roots = [tmp_path / "arg", tmp_path / "env", tmp_path / "xdg" / "fnet", tmp_path / "sys"]
    assert candidate_dirs("mnist", tmp_path / "arg") == [d for r in roots for d in (r / "mnist", r)]
    assert candidate_dirs("fashion_mnist", tmp_path / "arg") == [
        d for r in roots for d in (r / "fashion_mnist", r / "fashion-mnist", r)
    ]
    assert candidate_dirs("mnist")[0] == tmp_path / "env" / "mnist"


def test_find_dataset_dir_returns_the_first_folder_holding_every_named_file(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "a").write_text("")
    (tmp_path / "a").write_text("")
    (tmp_path / "b").write_text("")
    assert find_dataset_dir("mnist", ["a"], tmp_path) == tmp_path / "mnist"
    assert find_dataset_dir("mnist", ["a", "b"], tmp_path) == tmp_path
    assert find_dataset_dir("mnist", ["c"], tmp_path) is None


def test_unwritable_data_folder_gives_download_error_that_says_what_to_set(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(DownloadError, match=r"cannot create the folder(.|\n)*FNET_DATA_DIR"):
        mnist("test", data_dir=not_a_dir, mirrors=[UNREACHABLE])
