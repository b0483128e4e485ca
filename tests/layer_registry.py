"""The registry of every public layer, combinator and ready model, with a valid input.

The conformance tests (``test_layer_conformance.py``) run every entry through the same
checks, and meta-tests fail when a public layer of ``fnet.layers``, a combinator of
``fnet.combinators`` or a ready model of ``fnet.models`` is missing here (entries named
``"<name>"``, ``"<name>_<variant>"`` or ``"models.<name>..."``), so nothing public can skip
them (the idea of Haiku's ``jax_transforms_test``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import fnet
from fnet import models


class Case(NamedTuple):
    make: Callable[[], fnet.core.AnyModel]
    input_shape: tuple[int, ...]
    # Inputs for gradient checks stay away from kinks (ReLU at 0, max ties) by using
    # distinct random values; ``kinky`` marks layers whose check perturbs fewer inputs.
    smooth: bool = True


REGISTRY: dict[str, Case] = {
    "Dense": Case(lambda: fnet.Dense(5), (4, 3)),
    "Conv2D": Case(lambda: fnet.Conv2D(3, 3), (2, 6, 6, 2)),
    "Conv2D_strided_valid": Case(lambda: fnet.Conv2D(4, (3, 2), 2, "VALID"), (2, 7, 6, 3)),
    "MaxPool": Case(lambda: fnet.MaxPool(2), (2, 6, 6, 3), smooth=False),
    "AvgPool": Case(lambda: fnet.AvgPool(3, 2, "SAME"), (2, 7, 7, 2)),
    "Flatten": Case(lambda: fnet.Flatten(), (3, 2, 4)),
    "Reshape": Case(lambda: fnet.Reshape((4, 2)), (3, 8)),
    "Dropout": Case(lambda: fnet.Dropout(0.3), (4, 6)),
    "LayerNorm": Case(lambda: fnet.LayerNorm(), (4, 5)),
    "BatchNorm": Case(lambda: fnet.BatchNorm(), (6, 3)),
    "Relu": Case(lambda: fnet.Relu(), (4, 5), smooth=False),
    "Tanh": Case(lambda: fnet.Tanh(), (4, 5)),
    "Sigmoid": Case(lambda: fnet.Sigmoid(), (4, 5)),
    "LeakyRelu": Case(lambda: fnet.LeakyRelu(0.1), (4, 5), smooth=False),
    "Elu": Case(lambda: fnet.Elu(), (4, 5), smooth=False),
    "Maxout": Case(lambda: fnet.Maxout(3), (4, 6), smooth=False),
    "Softmax": Case(lambda: fnet.Softmax(), (4, 5)),
    "LogSoftmax": Case(lambda: fnet.LogSoftmax(), (4, 5)),
    "Activation": Case(lambda: fnet.Activation("tanh"), (4, 5)),
    "serial": Case(lambda: fnet.serial(fnet.Dense(4), fnet.Tanh(), fnet.Dense(2)), (3, 5)),
    "serial_stateful": Case(
        lambda: fnet.serial(fnet.Dense(4), fnet.BatchNorm(), fnet.Tanh()), (5, 3)
    ),
    "parallel_concat": Case(lambda: fnet.parallel(fnet.Dense(2), fnet.Dense(3)), (3, 4)),
    "parallel_sum": Case(
        lambda: fnet.parallel(
            fnet.Dense(3), fnet.serial(fnet.Dense(3), fnet.Tanh()), combine="sum"
        ),
        (3, 4),
    ),
    "parallel_tuple": Case(lambda: fnet.parallel(fnet.Dense(2), fnet.Tanh(), combine=None), (3, 4)),
    "parallel_stateful": Case(
        lambda: fnet.parallel(
            fnet.Dense(3), fnet.serial(fnet.Dense(3), fnet.BatchNorm()), combine="sum"
        ),
        (5, 4),
    ),
    "residual": Case(lambda: fnet.residual(fnet.Dense(4), fnet.Tanh()), (3, 4)),
    "residual_stateful": Case(lambda: fnet.residual(fnet.Dense(4), fnet.BatchNorm()), (5, 4)),
    "models.linear": Case(lambda: models.linear(3), (4, 2, 3)),
    "models.mlp": Case(lambda: models.mlp([6, 5], 3, "tanh"), (4, 7)),
    "models.mlp_maxout": Case(lambda: models.mlp([4], 3, "maxout"), (4, 5), smooth=False),
    "models.convnet": Case(
        lambda: models.convnet(3, channels=(2, 3), hidden=4), (2, 8, 8, 1), smooth=False
    ),
    "models.convnet_dropout": Case(
        lambda: models.convnet(3, channels=(2,), hidden=4, dropout=0.2), (2, 6, 6, 1), smooth=False
    ),
}
