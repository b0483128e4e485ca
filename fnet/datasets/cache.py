"""Where fnet looks for datasets, in one place: the one rule every loader, experiment and
test uses.

Roots, in order: the ``data_dir`` argument; ``$FNET_DATA_DIR``; the per-user cache
(``$XDG_CACHE_HOME/fnet``, ``%LOCALAPPDATA%/fnet`` on Windows, else ``~/.cache/fnet``);
the system location ``/usr/share/datasets`` (where Debian's ``dataset-*`` packages put
their files). In each root a dataset's files may sit in its own subfolder (``mnist``,
``fashion_mnist`` or Debian's ``fashion-mnist``, ``cifar10``) or directly in the root.
Downloads go to ``<first root>/<dataset>/``. Official files are recognised by their
content, so searching several folders can never pick up the wrong dataset.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

__all__ = [
    "ENV_VAR",
    "SYSTEM_DATA_DIR",
    "candidate_dirs",
    "data_roots",
    "download_dir",
    "find_dataset_dir",
    "resolve_data_dir",
]

ENV_VAR = "FNET_DATA_DIR"
#: Where distributions install datasets (Debian: ``/usr/share/datasets/fashion-mnist``).
SYSTEM_DATA_DIR = pathlib.Path("/usr/share/datasets")

# Subfolder names per dataset: fnet's own spelling first, then other common ones.
_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10"),
}

PathLike = str | os.PathLike[str]


def _user_cache() -> pathlib.Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "fnet"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return pathlib.Path(os.environ["LOCALAPPDATA"]) / "fnet"
    return pathlib.Path("~/.cache/fnet").expanduser()


def resolve_data_dir(data_dir: PathLike | None = None) -> pathlib.Path:
    """The root that downloads go to (the first of :func:`data_roots`), not created.

    ``data_dir`` if given, else ``$FNET_DATA_DIR``, else the per-user cache
    (``$XDG_CACHE_HOME/fnet``, else ``%LOCALAPPDATA%/fnet`` on Windows, else
    ``~/.cache/fnet``). ``~`` is expanded.
    """
    if data_dir is not None and str(data_dir) != "":
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env).expanduser()
    return _user_cache()


def data_roots(data_dir: PathLike | None = None) -> list[pathlib.Path]:
    """The root folders searched for datasets, in order, without duplicates.

    ``[data_dir, $FNET_DATA_DIR, per-user cache, /usr/share/datasets]``, leaving out
    the ones that are not set. Nothing is created or required to exist.
    """
    roots: list[pathlib.Path] = []
    if data_dir is not None and str(data_dir) != "":
        roots.append(pathlib.Path(data_dir).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(pathlib.Path(env).expanduser())
    roots += [_user_cache(), SYSTEM_DATA_DIR]
    return list(dict.fromkeys(roots))


def download_dir(dataset: str, data_dir: PathLike | None = None) -> pathlib.Path:
    """The folder that downloads of ``dataset`` go to: ``resolve_data_dir(data_dir)/<dataset>``."""
    return resolve_data_dir(data_dir) / dataset


def candidate_dirs(dataset: str, data_dir: PathLike | None = None) -> list[pathlib.Path]:
    """Every folder searched for the files of ``dataset``, in search order.

    For each root of :func:`data_roots`: its subfolders for the dataset (``mnist``;
    ``fashion_mnist`` and ``fashion-mnist``; ``cifar10`` and ``cifar-10``; the name
    itself for other datasets), then the root itself. E.g. with ``FNET_DATA_DIR``
    unset, ``candidate_dirs("fashion_mnist", "data")`` is ``data/fashion_mnist``,
    ``data/fashion-mnist``, ``data``, ``~/.cache/fnet/fashion_mnist``, ...,
    ``/usr/share/datasets/fashion-mnist``, ``/usr/share/datasets``.
    """
    subs = _SUBFOLDERS.get(dataset, (dataset,))
    dirs: list[pathlib.Path] = []
    for root in data_roots(data_dir):
        dirs += [root / s for s in subs]
        dirs.append(root)
    return list(dict.fromkeys(dirs))


def find_dataset_dir(
    dataset: str, files: Sequence[str], data_dir: PathLike | None = None
) -> pathlib.Path | None:
    """The first folder of :func:`candidate_dirs` that holds every one of ``files``.

    A cheap presence test by name (contents are verified by the loaders), for code that
    must decide whether data is there before loading it, e.g.
    ``find_dataset_dir("mnist", ["t10k-images-idx3-ubyte.gz"], "../shared/data")``.

    Returns:
      The folder, or ``None`` when no candidate holds them all.
    """
    for d in candidate_dirs(dataset, data_dir):
        if all((d / f).is_file() for f in files):
            return d
    return None
