"""Every step driver gives the same bits for the same key (``fnet.train.engine``).

``steps_per_call="epoch"`` (a rolled scan), 3 (a chunk of 3 unrolled steps, then a chunk
of 1 and the tail batch) and 1 (one step per call) must run the same steps on the same
batches with the same keys in the same order, and XLA must compile each step alike in
every program (canonical convolutions; chunks output the states between their steps).
Its own file so that ``--dist loadfile`` can run it beside the other engine tests.
"""

from __future__ import annotations

import pytest
from engine_cases import ADAM, SGD
from engine_cases import assert_same_bits as _assert_same_bits
from engine_cases import fit_case as _fit


@pytest.mark.parametrize(
    ("name", "remainder", "opt"),
    [
        ("dense", "keep", SGD),
        ("dense", "drop", ADAM),
        ("conv", "keep", ADAM),
        ("conv", "drop", SGD),
        ("batchnorm_dropout", "keep", ADAM),
        ("batchnorm_dropout", "drop", SGD),
    ],
    ids=["dense-keep-sgd", "dense-drop-adam", "conv-keep-adam", "conv-drop-sgd",
         "bn_dropout-keep-adam", "bn_dropout-drop-sgd"],
)  # fmt: skip
def test_every_driver_gives_the_same_bits_for_the_same_key(name, remainder, opt):
    # "epoch": a rolled scan; 3: a chunk of 3 unrolled steps, then a chunk of 1 (and the
    # tail batch with "keep"); 1: one step per call. Optimizer state (momentum, adam's
    # moments) too: those elementwise updates are what XLA would fuse across unrolled
    # steps, rounding differently, if a chunk did not output the states between steps.
    one = _fit(name, 1, remainder, opt=opt)
    _assert_same_bits(_fit(name, 3, remainder, opt=opt), one)
    _assert_same_bits(_fit(name, "epoch", remainder, opt=opt), one)
