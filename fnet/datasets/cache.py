"""Where fnet keeps its datasets: ``data_dir=`` > ``$FNET_DATA_DIR`` > a per-user cache.

Layout of a data directory ``ROOT``: one folder per dataset, ``ROOT/mnist/``,
``ROOT/fashion_mnist/``, ``ROOT/cifar10/``. Downloads are written there. When reading,
MNIST and CIFAR-10 files are also accepted directly in ``ROOT`` (so ``data_dir`` may
point straight at a folder holding the ``*-ubyte.gz`` files); Fashion-MNIST is not,
because its file names are the same as MNIST's.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["ENV_VAR", "candidate_dirs", "download_dir", "resolve_data_dir"]

ENV_VAR = "FNET_DATA_DIR"

# Datasets whose files may also sit directly in the data directory (unique file names).
_FLAT_OK = frozenset({"mnist", "cifar10"})


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Return the root data directory, without creating it.

    Order: the ``data_dir`` argument; else ``$FNET_DATA_DIR``; else
    ``$XDG_CACHE_HOME/fnet``; else ``%LOCALAPPDATA%/fnet`` on Windows; else
    ``~/.cache/fnet``. ``~`` is expanded.
    """
    if data_dir is not None and str(data_dir) != "":
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "fnet"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return pathlib.Path(os.environ["LOCALAPPDATA"]) / "fnet"
    return pathlib.Path("~/.cache/fnet").expanduser()


def download_dir(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The folder that downloads of ``dataset`` go to: ``ROOT/<dataset>/``."""
    return resolve_data_dir(data_dir) / dataset


def candidate_dirs(
    dataset: str, data_dir: str | os.PathLike[str] | None = None
) -> list[pathlib.Path]:
    """Folders searched, in order, for the files of ``dataset``."""
    root = resolve_data_dir(data_dir)
    dirs = [root / dataset]
    if dataset in _FLAT_OK:
        dirs.append(root)
    return dirs
