"""The registry of claims the experiments test: every result the lecture material states
(its table of results to reproduce first, then the other statements). Experiments report
on a claim by its id; the runner's ``results.md`` lists every claim here, run or not.

The lecture material is not in this repository: each claim is quoted (or closely
paraphrased) here, with where in the material it is made.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CLAIMS", "LECTURE_MATERIAL", "Claim", "by_id", "claim_row"]

#: What "the slides" are, for pages that must stand alone.
LECTURE_MATERIAL = (
    "five sets of university lecture slides on deep learning for classification (lecture "
    "and exercise slides; MNIST, CIFAR-10 and a 2-D spiral; linear, softmax and neural-net "
    "classifiers; losses, regularization, optimization, backpropagation) and the course's "
    "reference code; not in this repository, so each claim is quoted in the table"
)


class Claim(NamedTuple):
    """One stated result: what is claimed, where, in which setting, and who tests it.

    Attributes:
      id: short stable key used in ``metrics.json``.
      claim: the claim, quoted or closely paraphrased.
      source: where the slides state it.
      setting: the setting the claim is about.
      experiment: the experiment module that tests it.
      seeds_table: True for the rows of the lecture material's table of stated results.
    """

    id: str
    claim: str
    source: str
    setting: str
    experiment: str
    seeds_table: bool = False


CLAIMS: tuple[Claim, ...] = (
    # The lecture material's table of stated results, in its order.
    Claim(
        "mnist_linear_errors",
        "about 750 test errors (of 10,000)",
        "exercise slides",
        "MNIST, Linear(784,10) + softmax",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_mlp_errors",
        "about 250 test errors",
        "exercise slides",
        "MNIST, Linear(784,200) + tanh + Linear(200,10) + softmax",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_hyperparameters",
        "learning rate 0.1 to 0.01; batch 100 to 1000",
        "exercise slides",
        "typical settings for the two MNIST models above",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_init_scaling",
        "init W ~ N(0, sigma = sqrt(2/(M+N))), b = 0; pixels divided by 255",
        "exercise slides",
        "the two MNIST models above",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "relu_6x_sigmoid",
        "ReLU converges about 6x faster than sigmoid",
        "lecture slides",
        "deep nets",
        "activations",
        True,
    ),
    Claim(
        "lambda_smoother",
        "smoother decision boundary as lambda grows 0.001 -> 0.01 -> 0.1",
        "lecture slides",
        "2-D toy data",
        "regularization",
        True,
    ),
    # Other results the lecture material states.
    Claim(
        "spiral_linear_half",
        "a linear classifier cannot fit the spiral (about half right)",
        "course reference code",
        "spiral, 3 classes, angle noise 0.2",
        "spiral",
    ),
    Claim(
        "spiral_mlp_fits",
        "a 2-100-3 ReLU net can fit it almost perfectly",
        "lecture slides",
        "spiral, 3 classes, angle noise 0.2",
        "spiral",
    ),
    Claim(
        "spiral_coord_ceiling",
        "with coordinate noise 0.2 no classifier can exceed about 74%",
        "lecture notes on the spiral (course reference code's noise model)",
        "spiral, 3 classes, coordinate noise 0.2",
        "spiral",
    ),
    Claim(
        "hinge_stops_pulling",
        "hinge loss stops pulling once margins are met",
        "lecture slides",
        "linear classifier, multiclass SVM loss",
        "losses",
    ),
    Claim(
        "ce_l2_always_pull",
        "cross-entropy and L2 always pull",
        "lecture slides",
        "linear classifier, softmax cross-entropy; L2 penalty",
        "losses",
    ),
    Claim(
        "l2_prefers_spread",
        "L2 prefers the spread-out weight vector of two that score an input identically",
        "lecture slides",
        "x = (1,1,1,1), w1 = (1,0,0,0), w2 = (.25,.25,.25,.25)",
        "regularization",
    ),
    Claim(
        "gradient_check",
        "check the analytic gradient against the numerical one (centred differences)",
        "lecture and exercise slides",
        "every fnet layer, loss, regularizer and ready model",
        "gradcheck",
    ),
    Claim(
        "templates",
        "a linear classifier's rows of W are one image-shaped template per class",
        "lecture slides",
        "Linear(784,10) on MNIST (CIFAR-10 when present)",
        "templates",
    ),
    Claim(
        "sigmoid_local_gradient",
        "the sigmoid gate's local gradient is s(1-s); gradients multiply along the graph",
        "lecture slides",
        "sigmoid neuron w0=2, x0=-1, w1=-3, x1=-2, w2=-3",
        "graph",
    ),
    Claim(
        "graph_optimizations",
        "a framework's graph allows dead-code elimination and memory planning; autodiff "
        "builds the gradient graph from the forward graph",
        "lecture slides",
        "one training step of the 784-200-tanh-10 MLP under jax.jit",
        "graph",
    ),
    Claim(
        "size_not_regularizer",
        "do not use the size of the network as a regularizer; use stronger regularization instead",
        "lecture slides",
        "hidden sizes x L2 strengths, on the spiral and on real images",
        "capacity",
    ),
    Claim(
        "sgd_momentum_hard_to_beat",
        "well-tuned SGD + momentum is very hard to beat (second-order methods such as "
        "L-BFGS are the alternative named)",
        "lecture slides",
        "SGD, SGD + momentum 0.9, Adam and full-batch L-BFGS, each tuned by a small sweep",
        "optimizers",
    ),
)

_BY_ID = {c.id: c for c in CLAIMS}


def by_id(claim_id: str) -> Claim:
    """The registered claim ``claim_id`` (``KeyError`` naming the known ids otherwise)."""
    if claim_id not in _BY_ID:
        raise KeyError(f"unknown claim id {claim_id!r}; known: {sorted(_BY_ID)}")
    return _BY_ID[claim_id]


def claim_row(claim_id: str, result: str, verdict: str, setting: str | None = None) -> dict:
    """A ``{id, claim, source, setting, result, verdict}`` row for ``metrics.json``.

    ``setting`` overrides the registered setting (e.g. to name the data actually used).
    """
    c = by_id(claim_id)
    return {
        "id": c.id,
        "claim": c.claim,
        "source": c.source,
        "setting": setting or c.setting,
        "result": result,
        "verdict": verdict,
    }
