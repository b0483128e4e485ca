"""fnet's layer catalogue: each constructor returns a Model (or StatefulModel).

Constructors are CamelCase (``Dense``), combinators snake_case (``serial``), as in stax.
"""

from fnet.layers.activation import (
    Activation,
    Elu,
    LeakyRelu,
    LogSoftmax,
    Maxout,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
)
from fnet.layers.conv import Conv2D, conv_nhwc
from fnet.layers.dense import Dense, append_ones, fold_bias
from fnet.layers.dropout import Dropout
from fnet.layers.normalization import BatchNorm, LayerNorm
from fnet.layers.pooling import AvgPool, MaxPool
from fnet.layers.reshape import Flatten, Reshape

__all__ = [
    "Activation",
    "AvgPool",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Elu",
    "Flatten",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "Maxout",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "append_ones",
    "conv_nhwc",
    "fold_bias",
]
