"""Checksummed files and their download: mirrors in order, temporary file, atomic move.

A download is streamed into a hidden temporary file beside its destination while its
SHA-256 is computed; only when size and SHA-256 match the published values is it
moved into place with :func:`os.replace`. A failed, interrupted or corrupt download
therefore never leaves a file under the final name, and never replaces one that is
already there. Every network failure becomes :class:`fnet.errors.DownloadError`, whose
message lists the exact file names, the folder to put them in and the
``FNET_DATA_DIR`` / ``data_dir=`` settings.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import NamedTuple

from fnet.datasets.cache import ENV_VAR, candidate_dirs
from fnet.errors import DataError, DownloadError

__all__ = [
    "FileSpec",
    "download_file",
    "ensure_files",
    "file_digests",
    "missing_files_message",
    "verify_file",
]

_CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0
_USER_AGENT = "fnet-datasets/0.1 (+https://github.com/; python urllib)"


class FileSpec(NamedTuple):
    """A published file: its name, size in bytes, SHA-256 and MD5 (hex digests).

    fnet verifies size and SHA-256; the MD5 is kept because it is the digest most
    sources (torchvision, the dataset pages) publish, so users can cross-check.
    """

    name: str
    size: int
    sha256: str
    md5: str


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
    size, sha256, _ = file_digests(path)
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


def _fetch(url: str, tmp, timeout: float, spec: FileSpec) -> tuple[int, str]:
    """Stream ``url`` into the open file ``tmp``; return (size, sha256)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    sha, size = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        bar = _progress(spec)
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                tmp.write(chunk)
                sha.update(chunk)
                size += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if size > spec.size:
                    break  # more than the official file holds: stop reading
        finally:
            if bar is not None:
                bar.close()
    return size, sha.hexdigest()


def _progress(spec: FileSpec):
    """A tqdm bar when stderr is a terminal, else ``None``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a progress bar is not essential
        return None
    return tqdm(
        total=spec.size, unit="B", unit_scale=True, desc=spec.name, disable=None, leave=False
    )


def _try_mirrors(
    spec: FileSpec, dest_dir: pathlib.Path, mirrors: Sequence[str], timeout: float
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
        try:
            with os.fdopen(fd, "wb") as tmp:
                size, sha256 = _fetch(url, tmp, timeout, spec)
            problem = _mismatch(spec, size, sha256)
            if problem is None:
                os.replace(tmp_name, dest)
                return dest, reasons
            reasons.append(f"{url}: the downloaded file failed verification: {problem}")
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


def download_file(
    spec: FileSpec,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> pathlib.Path:
    """Download ``spec.name`` from the first mirror that serves a file matching ``spec``.

    Each mirror is a base URL; the file is fetched from ``mirror + "/" + spec.name``.
    The bytes go to a temporary file in ``dest_dir``, which replaces
    ``dest_dir / spec.name`` only after its size and SHA-256 match; otherwise it is
    deleted and the next mirror is tried. An existing file is replaced only by a
    verified download.

    Args:
      spec: the file to fetch.
      dest_dir: destination folder, created if needed.
      mirrors: base URLs, tried in order.
      timeout: seconds to wait for the connection and for each read.

    Returns:
      The path of the verified file, ``dest_dir / spec.name``.

    Raises:
      DownloadError: no mirror delivered a matching file (unreachable, HTTP error,
        interrupted, or checksum mismatch); the message gives each mirror's reason and
        where to put the file by hand.
    """
    dest_dir = pathlib.Path(dest_dir)
    path, reasons = _try_mirrors(spec, dest_dir, mirrors, timeout)
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


def ensure_files(
    dataset: str,
    specs: Sequence[FileSpec],
    *,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    mirrors: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    fix: str = "",
) -> list[pathlib.Path]:
    """Find, verify and if needed download the files of a dataset split.

    Files are looked for in :func:`fnet.datasets.cache.candidate_dirs`; those found are
    verified (size and SHA-256) before anything is downloaded; missing ones are
    downloaded into ``ROOT/<dataset>/`` when ``download`` is true.

    Returns:
      The verified paths, in the order of ``specs``.

    Raises:
      DataError: a file is present but does not match its checksum (it is left alone).
      DownloadError: files are missing and ``download`` is false or fetching failed; the
        message lists the missing file names and the folder to put them in.
    """
    dirs = candidate_dirs(dataset, data_dir)
    dest = dirs[0]
    found: dict[str, pathlib.Path] = {}
    for spec in specs:
        for d in dirs:
            if (d / spec.name).is_file():
                found[spec.name] = d / spec.name
                break
    for spec in specs:
        if spec.name in found:
            verify_file(found[spec.name], spec, fix=fix)
    missing = [s for s in specs if s.name not in found]
    where = " or ".join(str(d) for d in dirs)
    if missing and not download:
        names = ", ".join(s.name for s in missing)
        reason = f"{names} not found in {where}, and download=False."
        raise DownloadError(
            missing_files_message(dataset, [s.name for s in missing], dest, mirrors, reason=reason)
        )
    for i, spec in enumerate(missing):
        path, reasons = _try_mirrors(spec, dest, mirrors, timeout)
        if path is None:
            reason = f"the files are not in {where}, and " + _format_reasons(spec.name, reasons)
            still = [s.name for s in missing[i:]]
            raise DownloadError(missing_files_message(dataset, still, dest, mirrors, reason=reason))
        found[spec.name] = path
    return [found[s.name] for s in specs]
