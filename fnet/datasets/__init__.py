"""Datasets and input pipeline: spiral, MNIST, Fashion-MNIST, CIFAR-10, preprocessing.

Loaders return a :class:`Dataset` ``(inputs, labels, info)`` of NumPy arrays: raw
``uint8`` pixels and ``int32`` labels. Official files are verified against their
published SHA-256 and cached under ``data_dir=``, ``$FNET_DATA_DIR`` or
``~/.cache/fnet``; see ``docs/datasets.md``.
"""

from fnet.datasets.cache import ENV_VAR, resolve_data_dir
from fnet.datasets.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_FILE,
    CIFAR10_MIRRORS,
    cifar10,
    read_cifar10_archive,
)
from fnet.datasets.dataset import Dataset
from fnet.datasets.download import FileSpec, download_file, verify_file
from fnet.datasets.idx import read_idx, write_idx
from fnet.datasets.mnist import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRRORS,
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SUBSET_FILES,
    fashion_mnist,
    load_mnist_format,
    mnist,
    mnist_train_or_subset,
)
from fnet.datasets.preprocessing import (
    Standardizer,
    fit_standardizer,
    flatten,
    one_hot,
    scale_pixels,
    shuffle,
    standardize,
    train_val_split,
)
from fnet.datasets.spiral import spiral
from fnet.validation import check_labels

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILE",
    "CIFAR10_MIRRORS",
    "ENV_VAR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SUBSET_FILES",
    "Dataset",
    "FileSpec",
    "Standardizer",
    "check_labels",
    "cifar10",
    "download_file",
    "fashion_mnist",
    "fit_standardizer",
    "flatten",
    "load_mnist_format",
    "mnist",
    "mnist_train_or_subset",
    "one_hot",
    "read_cifar10_archive",
    "read_idx",
    "resolve_data_dir",
    "scale_pixels",
    "shuffle",
    "spiral",
    "standardize",
    "train_val_split",
    "verify_file",
    "write_idx",
]
