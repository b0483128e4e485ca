"""Checksummed files and their download: mirrors in order, temporary file, atomic move.

A download is streamed into a hidden temporary file beside its destination while its
SHA-256 is computed; only when size and SHA-256 match the published values is it
moved into place with :func:`os.replace`. A failed, interrupted or corrupt download
therefore never leaves a file under the final name, and never replaces one that is
already there. A download must finish within an overall deadline and keep a minimum
average rate (a server that trickles bytes is cut off). Every network failure becomes
:class:`fnet.errors.DownloadError`, whose message lists the exact file names, the
folder to put them in and the ``FNET_DATA_DIR`` / ``data_dir=`` settings.

Files already on disk are found by :func:`fnet.datasets.candidate_dirs` and, for IDX
files with a recorded content digest, verified by the SHA-256 of their decompressed
bytes (so a re-compressed copy of the official data is accepted, any changed byte is
not); other files by the size and SHA-256 of the file itself.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from fnet.datasets.cache import ENV_VAR, candidate_dirs, download_dir
from fnet.errors import DataError, DownloadError

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MIN_RATE",
    "DEFAULT_TIMEOUT",
    "FileSpec",
    "download_file",
    "ensure_files",
    "file_digests",
    "missing_files_message",
    "verify_file",
    "verify_path",
]

_CHUNK = 1 << 20
#: Seconds to wait for the connection and for each read.
DEFAULT_TIMEOUT = 60.0
#: Seconds a whole file may take to download (30 minutes).
DEFAULT_DEADLINE = 1800.0
#: Bytes per second a download must average once ``timeout`` seconds have passed.
DEFAULT_MIN_RATE = 10_000.0
_USER_AGENT = "fnet-datasets/0.1 (+https://github.com/; python urllib)"


class FileSpec(NamedTuple):
    """A published file: its name, size in bytes, SHA-256 and MD5 (hex digests), and
    for compressed IDX files the size and SHA-256 of the decompressed content.

    Downloads are verified by ``size`` and ``sha256``. Files found on disk are verified
    by ``raw_size`` and ``raw_sha256`` when those are set (so any re-compression of
    the official bytes is accepted), else by ``size`` and ``sha256``. The MD5 is kept
    because it is the digest most sources (torchvision, the dataset pages) publish,
    so users can cross-check.
    """

    name: str
    size: int
    sha256: str
    md5: str
    raw_size: int | None = None
    raw_sha256: str | None = None


def file_digests(path: str | os.PathLike[str]) -> tuple[int, str, str]:
    """Return ``(size in bytes, SHA-256 hex, MD5 hex)`` of a file, read in 1 MiB chunks."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def _mismatch(spec: FileSpec, size: int, sha256: str) -> str | None:
    """Describe how a file differs from ``spec``, or ``None`` when it matches."""
    if size != spec.size:
        kind = "truncated or incomplete" if size < spec.size else "too long"
        return f"it is {size} bytes, the official file is {spec.size} bytes ({kind})"
    if sha256 != spec.sha256:
        return f"its SHA-256 is {sha256}, the official file's is {spec.sha256}"
    return None


def verify_file(path: str | os.PathLike[str], spec: FileSpec, *, fix: str = "") -> None:
    """Check a file's size and SHA-256 against ``spec``.

    Raises:
      DataError: on a mismatch; the message names the file, says what differs and how
        to fix it (``fix`` is appended).
    """
    size = os.stat(path).st_size
    # A file of the wrong size is rejected without reading it.
    sha256 = file_digests(path)[1] if size == spec.size else ""
    problem = _mismatch(spec, size, sha256)
    if problem is not None:
        raise DataError(
            f"{path}: checksum verification failed: {problem}. The file is corrupt or is "
            f"not the official {spec.name}. Delete it so that fnet can download it again, "
            f"or replace it with the official file.{fix}"
        )


def missing_files_message(
    dataset: str,
    names: Sequence[str],
    dest: pathlib.Path,
    mirrors: Sequence[str],
    *,
    reason: str,
) -> str:
    """The text of the DownloadError raised when files are missing and cannot be fetched."""
    listed = "\n".join(f"    {n}" for n in names)
    urls = ", ".join(mirrors) if mirrors else "(no mirrors configured)"
    return (
        f"{dataset}: {reason}\n"
        f"To use {dataset} without internet access, download these files (unchanged, still "
        f"gzipped/archived) on a machine that has it, from {urls}:\n{listed}\n"
        f"and put them in\n    {dest}\n"
        f"or in the folder named by the environment variable {ENV_VAR} (files directly "
        f"in it or in a '{dest.name}' subfolder), or pass data_dir=... to the loader."
    )


class _Limits(NamedTuple):
    """When a download must end and how fast it must go (``time.monotonic`` seconds)."""

    start: float
    deadline: float  # seconds after start
    min_rate: float  # bytes per second, averaged since start
    grace: float  # the rate is checked once this many seconds have passed


class _TooSlow(Exception):
    """A download passed its deadline or fell below its minimum rate."""


def _check_pace(limits: _Limits, size: int) -> None:
    elapsed = time.monotonic() - limits.start
    if elapsed > limits.deadline:
        raise _TooSlow(
            f"stopped after the overall deadline of {limits.deadline:g} s ({size} bytes received)"
        )
    if elapsed > limits.grace and size < limits.min_rate * elapsed:
        raise _TooSlow(
            f"stopped: {size} bytes in {elapsed:.1f} s is below the minimum rate of "
            f"{limits.min_rate:g} bytes/s"
        )


def _watchdog_opener(
    limits: _Limits, killed: list[str], timers: list[threading.Timer]
) -> urllib.request.OpenerDirector:
    """An opener whose connections are shut down at the deadline, even mid-read.

    A socket timeout bounds each read only; a server sending one byte per second, in
    the headers or the body, would otherwise never be stopped.
    """

    def arm(conn: http.client.HTTPConnection) -> None:
        left = limits.start + limits.deadline - time.monotonic()

        def kill() -> None:
            killed.append("deadline")
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(max(left, 0.0), kill)
        timer.daemon = True
        timer.start()
        timers.append(timer)

    class _HTTP(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            arm(self)

    class _HTTPS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            arm(self)

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(_HTTP, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):  # type: ignore[no-untyped-def]
            context = getattr(self, "_context", None)  # what HTTPSHandler was given
            return self.do_open(_HTTPS, req, context=context)

    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


def _fetch(url: str, tmp, timeout: float, spec: FileSpec, limits: _Limits) -> tuple[int, str]:
    """Stream ``url`` into the open file ``tmp``; return (size, sha256).

    Raises _TooSlow past the deadline or below the minimum rate.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    sha, size = hashlib.sha256(), 0
    killed: list[str] = []
    timers: list[threading.Timer] = []
    opener = _watchdog_opener(limits, killed, timers)
    try:
        with opener.open(request, timeout=timeout) as response:
            bar = _progress(spec)
            try:
                while True:
                    _check_pace(limits, size)
                    # read1: at most one socket read, so the pace is checked between them.
                    chunk = response.read1(_CHUNK)
                    if not chunk:
                        break
                    tmp.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                    if size > spec.size:
                        break  # more than the official file holds: stop reading
            finally:
                bar.close()
    except (OSError, http.client.HTTPException):
        if killed:
            _check_pace(limits, size)  # reports the deadline
        raise
    finally:
        for timer in timers:
            timer.cancel()
    if killed:
        _check_pace(limits, size)
    return size, sha.hexdigest()


def _progress(spec: FileSpec) -> tqdm:
    """A progress bar shown only when stderr is a terminal (tqdm's ``disable=None``)."""
    return tqdm(
        total=spec.size, unit="B", unit_scale=True, desc=spec.name, disable=None, leave=False
    )


def _try_mirrors(
    spec: FileSpec,
    dest_dir: pathlib.Path,
    mirrors: Sequence[str],
    timeout: float,
    deadline: float,
    min_rate: float,
) -> tuple[pathlib.Path | None, list[str]]:
    """Try each mirror in turn; return (verified path or None, one reason per failure)."""
    dest = dest_dir / spec.name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, [f"cannot create the folder {dest_dir} ({e})"]
    reasons: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=dest_dir)
        except OSError as e:
            reasons.append(f"cannot write to the folder {dest_dir} ({e})")
            break
        limits = _Limits(time.monotonic(), deadline, min_rate, timeout)
        try:
            with os.fdopen(fd, "wb") as tmp:
                size, sha256 = _fetch(url, tmp, timeout, spec, limits)
            problem = _mismatch(spec, size, sha256)
            if problem is None:
                os.replace(tmp_name, dest)
                return dest, reasons
            reasons.append(f"{url}: the downloaded file failed verification: {problem}")
        except _TooSlow as e:
            reasons.append(f"{url}: {e}")
        except urllib.error.HTTPError as e:
            reasons.append(f"{url}: HTTP {e.code} {e.reason}")
        except urllib.error.URLError as e:
            reasons.append(f"{url}: {e.reason}")
        except (http.client.HTTPException, OSError, ValueError) as e:
            # IncompleteRead (connection closed midway), timeouts, resets, bad URLs.
            reasons.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    if not mirrors:
        reasons.append("no mirrors given")
    return None, reasons


def _format_reasons(name: str, reasons: Sequence[str]) -> str:
    return f"could not download {name}:\n" + "\n".join(f"  - {r}" for r in reasons)


def _check_limits(timeout: float, deadline: float, min_rate: float) -> None:
    for label, v in (("timeout", timeout), ("deadline", deadline)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise ValueError(f"{label} must be a positive number of seconds, got {v!r}")
    if not (isinstance(min_rate, (int, float)) and not isinstance(min_rate, bool)) or not (
        min_rate >= 0
    ):
        raise ValueError(f"min_rate must be a number of bytes/s >= 0, got {min_rate!r}")


def download_file(
    spec: FileSpec,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    min_rate: float = DEFAULT_MIN_RATE,
) -> pathlib.Path:
    """Download ``spec.name`` from the first mirror that serves a file matching ``spec``.

    Each mirror is a base URL; the file is fetched from ``mirror + "/" + spec.name``.
    The bytes go to a temporary file in ``dest_dir``, which replaces
    ``dest_dir / spec.name`` only after its size and SHA-256 match; otherwise it is
    deleted and the next mirror is tried. An existing file is replaced only by a
    verified download. Reading stops at ``spec.size + 1`` bytes whatever the server
    sends.

    Args:
      spec: the file to fetch.
      dest_dir: destination folder, created if needed.
      mirrors: base URLs, tried in order.
      timeout: seconds to wait for the connection and for each read.
      deadline: seconds one mirror may take for the whole file (connection, headers
        and body); the connection is shut down when it passes, even mid-read.
      min_rate: bytes per second the download must average, checked once ``timeout``
        seconds have passed; ``0`` disables the check.

    Returns:
      The path of the verified file, ``dest_dir / spec.name``.

    Raises:
      ValueError: ``timeout`` or ``deadline`` not positive, ``min_rate`` negative.
      DownloadError: no mirror delivered a matching file (unreachable, HTTP error,
        interrupted, past the deadline, below the minimum rate, or checksum mismatch);
        the message gives each mirror's reason and where to put the file by hand.
    """
    _check_limits(timeout, deadline, min_rate)
    dest_dir = pathlib.Path(dest_dir)
    path, reasons = _try_mirrors(spec, dest_dir, mirrors, timeout, deadline, min_rate)
    if path is None:
        raise DownloadError(
            missing_files_message(
                spec.name,
                [spec.name],
                dest_dir,
                mirrors,
                reason=_format_reasons(spec.name, reasons),
            )
        )
    return path


def verify_path(path: pathlib.Path, spec: FileSpec, *, fix: str = "") -> pathlib.Path:
    """:func:`verify_file`, returning the path (the default reader of :func:`ensure_files`)."""
    verify_file(path, spec, fix=fix)
    return path


def _names(spec: FileSpec) -> list[str]:
    """The names a copy of ``spec`` may have on disk (also uncompressed, when its
    content digest is known)."""
    if spec.raw_sha256 is not None and spec.name.endswith(".gz"):
        return [spec.name, spec.name[:-3]]
    return [spec.name]


def ensure_files(
    dataset: str,
    specs: Sequence[FileSpec],
    *,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    mirrors: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    fix: str = "",
    read: Callable[..., Any] = verify_path,
    others: str = "*",
) -> list[Any]:
    """Find, verify and if needed download the files of a dataset split.

    For each spec, every folder of :func:`fnet.datasets.candidate_dirs` is searched
    in order and the first copy that ``read(path, spec, fix=fix)`` accepts (it raises
    :class:`DataError` for a file that is not the official one) is used. Missing files
    are downloaded into ``download_dir(dataset, data_dir)`` when ``download`` is true
    (verified by archive size and SHA-256), then passed to ``read`` too.

    Args:
      read: loads and verifies one file; its results are returned.
      others: glob of file names worth mentioning when the official files are absent
        (e.g. ``"*-ubyte*"`` finds MNIST's 5k subset).

    Returns:
      ``read``'s results, in the order of ``specs``.

    Raises:
      DataError: a copy is present but none is the official file, and downloading
        would overwrite it or is off (it is left alone); the message names each copy.
      DownloadError: files are missing and ``download`` is false or fetching failed;
        the message lists the missing file names, every folder searched, files found
        there that are not the official ones, and where to put the files.
    """
    dirs = candidate_dirs(dataset, data_dir)
    dest = download_dir(dataset, data_dir)
    found: dict[str, Any] = {}
    rejected: dict[str, list[tuple[pathlib.Path, DataError]]] = {}
    for spec in specs:
        for d in dirs:
            for name in _names(spec):
                path = d / name
                if spec.name in found or not path.is_file():
                    continue
                try:
                    found[spec.name] = read(path, spec, fix=fix)
                except DataError as e:
                    rejected.setdefault(spec.name, []).append((path, e))
    missing = [s for s in specs if s.name not in found]
    blocked = [
        s
        for s in missing
        if not download or any(p.parent == dest for p, _ in rejected.get(s.name, []))
    ]
    bad = [s for s in blocked if s.name in rejected]
    if bad:
        first = rejected[bad[0].name]
        if len(first) == 1 and len(bad) == 1:
            raise first[0][1]
        lines = "\n".join(f"  - {e}" for s in bad for _, e in rejected[s.name])
        raise DataError(
            f"{dataset}: no copy of {', '.join(s.name for s in bad)} is the official file; "
            f"the copies found were rejected:\n{lines}"
        )
    where = "\n".join(f"    {d}" for d in dirs)
    if missing and not download:
        names = ", ".join(s.name for s in missing)
        reason = f"{names} not found, and download=False. Looked in:\n{where}" + _others_note(
            dirs, specs, others
        )
        raise DownloadError(
            missing_files_message(dataset, [s.name for s in missing], dest, mirrors, reason=reason)
        )
    for i, spec in enumerate(missing):
        got, reasons = _try_mirrors(
            spec, dest, mirrors, timeout, DEFAULT_DEADLINE, DEFAULT_MIN_RATE
        )
        if got is None:
            reason = (
                f"the files are not in any of:\n{where}"
                + _others_note(dirs, specs, others)
                + "\nand "
                + _format_reasons(spec.name, reasons)
            )
            still = [s.name for s in missing[i:]]
            raise DownloadError(missing_files_message(dataset, still, dest, mirrors, reason=reason))
        found[spec.name] = read(got, spec, fix=fix)
    return [found[s.name] for s in specs]


def _others_note(dirs: Sequence[pathlib.Path], specs: Sequence[FileSpec], pattern: str) -> str:
    """Name the files matching ``pattern`` in ``dirs`` that are not the official ones."""
    official = {n for s in specs for n in _names(s)}
    seen = []
    for d in dirs:
        try:
            seen += sorted(p for p in d.glob(pattern) if p.is_file() and p.name not in official)
        except OSError:
            continue
    if not seen:
        return ""
    listed = "\n".join(f"    {p}" for p in dict.fromkeys(seen))
    return (
        "\nFound these files, which are not the official ones asked for (a subset such as "
        "MNIST's train5k, another split, or another format); load them knowingly with "
        f"load_mnist_format / read_cifar10_archive, or mnist_train_or_subset:\n{listed}"
    )
