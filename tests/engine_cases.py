"""Models, data and helpers shared by the engine tests (``test_engine*.py``).

Shapes are tiny: compiling dominates on a busy CPU.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

import fnet
from fnet.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu
from fnet.losses import softmax_cross_entropy
from fnet.train import fit, supervised

RNG = np.random.default_rng(0)
N, B = 70, 16  # 4 full batches and a tail of 6 ("keep"), or 4 steps ("drop")
Y = RNG.integers(0, 3, N).astype(np.int32)
X_DENSE = RNG.normal(size=(N, 5)).astype(np.float32)
X_IMG = RNG.random((N, 6, 6, 1), dtype=np.float32)
SGD = optax.sgd(0.1, momentum=0.9)

DENSE = fnet.models.mlp([8], 3, dropout=0.3)
BN_DROP = fnet.serial(Dense(8), BatchNorm(), Relu(), Dropout(0.3), Dense(3))
CONV = fnet.serial(Conv2D(3, 3), Relu(), MaxPool(2), Flatten(), Dense(3))
CASES = {
    "dense": (DENSE, X_DENSE),
    "batchnorm_dropout": (BN_DROP, X_DENSE),
    "conv": (CONV, X_IMG),
}


ADAM = optax.adam(1e-2)


def fit_case(name: str, steps_per_call, remainder: str = "keep", epochs: int = 2, opt=SGD):
    model, x = CASES[name]
    init = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    params, state = init[1], (init[2] if len(init) == 3 else None)
    objective = supervised(model, softmax_cross_entropy)
    return fit(objective, params, opt, x, Y, state=state, key=jax.random.key(3), epochs=epochs,
               batch_size=B, remainder=remainder, steps_per_call=steps_per_call,
               progress=False)  # fmt: skip


def assert_same_bits(a, b) -> None:
    trees = [(r.params, r.state, r.opt_state) for r in (a, b)]
    for got, want in zip(*map(jax.tree.leaves, trees), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for k, v in b.history.items():
        if k.startswith("train_"):
            assert a.history[k] == v, k
