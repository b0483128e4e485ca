"""fnet: a functional neural-net toolkit on JAX.

Models are pairs of pure functions ``(init, apply)`` over plain nested dicts of arrays;
losses, regularizers and metrics are pure functions. See ``docs/design.md``.
"""

from fnet import (
    activations,
    checkpoint,
    datasets,
    distributed,
    errors,
    gradcheck,
    initializers,
    layers,
    losses,
    metrics,
    models,
    per_example,
    regularizers,
    validation,
)
from fnet.combinators import parallel, residual, serial
from fnet.core import Model, StatefulModel, as_stateful, describe, is_stateful, layer_key
from fnet.layers import (
    Activation,
    AvgPool,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Elu,
    Flatten,
    LayerNorm,
    LeakyRelu,
    LogSoftmax,
    Maxout,
    MaxPool,
    Relu,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from fnet.summary import abstract_init, param_count, summary
from fnet.train import evaluate, fit, predict, restore_params
from fnet.tree import cast_floating
from fnet.validation import check_labels

__version__ = "0.1.0"
