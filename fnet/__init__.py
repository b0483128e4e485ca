"""fnet: a functional neural-net toolkit on JAX."""

from fnet import errors, validation
from fnet.validation import check_labels

__version__ = "0.1.0"
