"""Datasets and input pipeline: spiral, MNIST, Fashion-MNIST, CIFAR-10, preprocessing.

Loaders return a :class:`Dataset` ``(inputs, labels, info)`` of NumPy arrays: raw
``uint8`` pixels and ``int32`` labels. Official files are verified (MNIST-format files
by the SHA-256 of their decompressed content, archives by their published SHA-256) and
looked for under ``data_dir=``, ``$FNET_DATA_DIR``, ``~/.cache/fnet`` and
``/usr/share/datasets`` (:func:`candidate_dirs`); see ``docs/datasets.md``.
"""

from fnet.datasets.cache import (
    ENV_VAR,
    SYSTEM_DATA_DIR,
    candidate_dirs,
    data_roots,
    find_dataset_dir,
    resolve_data_dir,
)
from fnet.datasets.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_FILE,
    CIFAR10_MIRRORS,
    CIFAR10_PYTHON_FILE,
    cifar10,
    read_cifar10_archive,
)
from fnet.datasets.dataset import Dataset
from fnet.datasets.download import (
    DEFAULT_DEADLINE,
    DEFAULT_MIN_RATE,
    DEFAULT_TIMEOUT,
    FileSpec,
    download_file,
    verify_file,
)
from fnet.datasets.idx import MAX_IDX_BYTES, read_idx, write_idx
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
    "CIFAR10_PYTHON_FILE",
    "DEFAULT_DEADLINE",
    "DEFAULT_MIN_RATE",
    "DEFAULT_TIMEOUT",
    "ENV_VAR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "MAX_IDX_BYTES",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SUBSET_FILES",
    "SYSTEM_DATA_DIR",
    "Dataset",
    "FileSpec",
    "Standardizer",
    "candidate_dirs",
    "check_labels",
    "cifar10",
    "data_roots",
    "download_file",
    "fashion_mnist",
    "find_dataset_dir",
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
