"""The checkpoint folder on disk: listing steps, atomic writes, pruning, bounded reads.

Every ``OSError`` leaves this module as :class:`~fnet.errors.CheckpointError` naming the
path involved.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path

from fnet.checkpoint._format import ARRAYS_FILE, MANIFEST_FILE
from fnet.errors import CheckpointError

STEP_RE = re.compile(r"^step_(\d{9,})$")
TMP_PREFIX = ".tmp-"
# .tmp-<kind>_<step>-<host>-<pid>-<token>; the host may itself contain dashes.
TMP_RE = re.compile(r"^\.tmp-(?P<what>.+?)-(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{16})$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def step_dir(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:09d}"


def _os_error(what: str, path: Path, exc: OSError) -> CheckpointError:
    why = exc.strerror or str(exc)
    code = f"[Errno {exc.errno}] " if exc.errno else ""
    return CheckpointError(f"{what} {path}: {code}{why}")


def _inside(ckpt_dir: Path, entry: Path) -> bool:
    """Whether ``entry`` (perhaps a symlink) resolves to a place inside ``ckpt_dir``."""
    try:
        return entry.resolve().is_relative_to(ckpt_dir.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def all_steps(ckpt_dir: str | os.PathLike[str]) -> list[int]:
    """The steps of the complete checkpoints in ``ckpt_dir``, ascending.

    A checkpoint is a ``step_<digits>`` directory holding ``manifest.json``; temporary
    directories left by an interrupted save are not counted, nor are step directories
    that are symlinks to a place outside ``ckpt_dir``. A missing ``ckpt_dir`` gives
    ``[]``.

    Raises:
      CheckpointError: ``ckpt_dir`` exists but is not a readable directory.
    """
    d = Path(ckpt_dir)
    if not d.exists():
        return []
    if not d.is_dir():
        raise CheckpointError(
            f"checkpoint folder {d} is not a directory; pass the folder given to save()."
        )
    steps = []
    try:
        for entry in d.iterdir():
            m = STEP_RE.match(entry.name)
            if not m or (entry.is_symlink() and not _inside(d, entry)):
                continue
            if (entry / MANIFEST_FILE).is_file():
                steps.append(int(m.group(1)))
    except OSError as exc:
        raise _os_error("cannot list the checkpoint folder", d, exc) from exc
    return sorted(steps)


def checked_step_dir(ckpt_dir: Path, step: int) -> Path:
    """``step_dir``, refusing a symlink that leads out of ``ckpt_dir``."""
    p = step_dir(ckpt_dir, step)
    if p.is_symlink() and not _inside(ckpt_dir, p):
        raise CheckpointError(
            f"checkpoint {p} is a symlink to {os.readlink(p)!r}, outside {ckpt_dir}; fnet "
            "never follows a step directory out of its checkpoint folder. Move the "
            "checkpoint into the folder instead."
        )
    return p


def read_regular(path: Path, *, size: int | None = None, max_size: int | None = None) -> bytes:
    """Read a regular file (not a symlink, device or pipe) whose size is checked first.

    Args:
      size: the exact size it must have (as recorded in the manifest).
      max_size: the largest size accepted when ``size`` is not known.
    """
    if not _NOFOLLOW and path.is_symlink():  # no O_NOFOLLOW (Windows): check first
        raise CheckpointError(f"{path} is a symlink; checkpoint files must be regular files.")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on files).
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(
                f"{path} is a symlink; checkpoint files must be regular files."
            ) from exc
        raise _os_error("cannot read", path, exc) from exc
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(
                    f"{path} is not a regular file (a device, pipe or directory); the "
                    "checkpoint is corrupt. Restore another step (see all_steps())."
                )
            if size is not None and st.st_size != size:
                raise CheckpointError(
                    f"{path} is truncated or corrupt: {st.st_size} bytes, the manifest says "
                    f"{size}. Restore another step (see all_steps())."
                )
            if max_size is not None and st.st_size > max_size:
                raise CheckpointError(
                    f"{path} is {st.st_size:,} bytes, more than the {max_size:,} a checkpoint "
                    "manifest may have; the checkpoint is corrupt."
                )
            data = f.read(st.st_size + 1)
        except OSError as exc:
            raise _os_error("cannot read", path, exc) from exc
    if len(data) != st.st_size:
        raise CheckpointError(f"{path} changed size while it was read; try again.")
    return data


# --------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def host_tag() -> str:
    """This host's name as it appears in temporary directory names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _tmp_name(what: str) -> str:
    return f"{TMP_PREFIX}{what}-{host_tag()}-{os.getpid()}-{secrets.token_hex(8)}"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp_dirs(ckpt_dir: Path) -> None:
    """Delete temporary directories left by saves of dead processes on this host.

    Directories of live processes (a concurrent save) and of other hosts (whose pids cannot
    be checked from here) are left alone.
    """
    host = host_tag()
    for entry in ckpt_dir.iterdir():
        m = TMP_RE.match(entry.name)
        if not m or not entry.is_dir() or m.group("host") != host:
            continue
        pid = int(m.group("pid"))
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def make_ckpt_dir(ckpt_dir: Path) -> None:
    """Create ``ckpt_dir`` (and parents) or raise naming why it cannot be one."""
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        kind = "a dangling symlink" if ckpt_dir.is_symlink() else "a file"
        raise CheckpointError(
            f"cannot use {ckpt_dir} as the checkpoint folder: it is {kind}, not a "
            "directory. Pass another ckpt_dir, or remove it."
        ) from exc
    except OSError as exc:
        raise _os_error("cannot create the checkpoint folder", ckpt_dir, exc) from exc


def write_atomically(
    ckpt_dir: Path, final: Path, data: bytes, manifest_bytes: bytes, *, overwrite: bool
) -> None:
    """Write both files into a temporary sibling, fsync, and rename it to ``final``.

    Raises:
      CheckpointError: any OS error (disk full, permissions, another process saving the
        same step at the same time); the temporary directory is removed and ``final``
        is left as it was.
    """
    make_ckpt_dir(ckpt_dir)
    try:
        _remove_stale_tmp_dirs(ckpt_dir)
        tmp = ckpt_dir / _tmp_name(final.name)
        tmp.mkdir()
    except OSError as exc:
        raise _os_error("cannot write in the checkpoint folder", ckpt_dir, exc) from exc
    old = None
    try:
        for name, payload in ((ARRAYS_FILE, data), (MANIFEST_FILE, manifest_bytes)):
            try:
                _write_durably(tmp / name, payload)
            except OSError as exc:
                what = f"cannot write checkpoint {final.name}: writing"
                raise _os_error(what, tmp / name, exc) from exc
        _fsync_dir(tmp)
        if overwrite and final.exists():
            # Not atomic as a whole: between these renames `final` is absent (older steps
            # are untouched, and the old copy survives in `old` until removed).
            old = ckpt_dir / _tmp_name("delete")
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if old is not None:  # put the previous checkpoint back
                os.rename(old, final)
                old = None
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR):
                raise CheckpointError(
                    f"checkpoint {final} appeared while this save was writing it: another "
                    "process saved the same step at the same time. Its checkpoint was kept "
                    "and this one discarded; give each writer its own ckpt_dir or step."
                ) from exc
            raise
        _fsync_dir(ckpt_dir)
    except CheckpointError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_error(f"cannot save checkpoint {final.name} in", ckpt_dir, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prune(ckpt_dir: Path, keep: int, *, protect: int) -> None:
    """Delete all but the ``keep`` highest steps (never ``protect``), each atomically."""
    victims = [s for s in all_steps(ckpt_dir)[:-keep] if s != protect]
    for s in victims:
        trash = ckpt_dir / _tmp_name("delete")
        try:
            os.rename(step_dir(ckpt_dir, s), trash)  # atomic: the step vanishes as a whole
        except FileNotFoundError:  # a concurrent save pruned it already
            continue
        except OSError as exc:
            raise _os_error(
                f"saved step {protect}, but cannot delete the old checkpoint",
                step_dir(ckpt_dir, s),
                exc,
            ) from exc
        _fsync_dir(ckpt_dir)
        shutil.rmtree(trash, ignore_errors=True)
