"""The registry of claims the experiments test: every row of SEEDS.md §6 plus the other
results the slides state. Experiments report on a claim by its id; the runner's
``results.md`` lists every claim here, run or not.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CLAIMS", "Claim", "by_id", "claim_row"]


class Claim(NamedTuple):
    """One stated result: what is claimed, where, in which setting, and who tests it.

    Attributes:
      id: short stable key used in ``metrics.json``.
      claim: the claim, quoted or closely paraphrased.
      source: where the slides state it.
      setting: the setting the claim is about.
      experiment: the experiment module that tests it.
      seeds_table: True for the rows of SEEDS.md §6 ("Results the slides state").
    """

    id: str
    claim: str
    source: str
    setting: str
    experiment: str
    seeds_table: bool = False


CLAIMS: tuple[Claim, ...] = (
    # SEEDS.md §6, in its order.
    Claim(
        "mnist_linear_errors",
        "about 750 test errors (of 10,000)",
        "exercise slides (SEEDS §6)",
        "MNIST, Linear(784,10) + softmax",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_mlp_errors",
        "about 250 test errors",
        "exercise slides (SEEDS §6)",
        "MNIST, Linear(784,200) + tanh + Linear(200,10) + softmax",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_hyperparameters",
        "learning rate 0.1 to 0.01; batch 100 to 1000",
        "exercise slides (SEEDS §6)",
        "typical settings for the two MNIST models above",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "mnist_init_scaling",
        "init W ~ N(0, sigma = sqrt(2/(M+N))), b = 0; pixels divided by 255",
        "exercise slides (SEEDS §6)",
        "the two MNIST models above",
        "mnist_classifiers",
        True,
    ),
    Claim(
        "relu_6x_sigmoid",
        "ReLU converges about 6x faster than sigmoid",
        "lecture slides (SEEDS §2, §6)",
        "deep nets",
        "activations",
        True,
    ),
    Claim(
        "lambda_smoother",
        "smoother decision boundary as lambda grows 0.001 -> 0.01 -> 0.1",
        "lecture slides (SEEDS §3, §6)",
        "2-D toy data",
        "regularization",
        True,
    ),
    # Other results stated in SEEDS.md §1-§5.
    Claim(
        "spiral_linear_half",
        "a linear classifier cannot fit the spiral (about half right)",
        "SEEDS §1 (course reference code)",
        "spiral, 3 classes, angle noise 0.2",
        "spiral",
    ),
    Claim(
        "spiral_mlp_fits",
        "a 2-100-3 ReLU net can fit it almost perfectly",
        "SEEDS §1 (lecture slides)",
        "spiral, 3 classes, angle noise 0.2",
        "spiral",
    ),
    Claim(
        "spiral_coord_ceiling",
        "with coordinate noise 0.2 no classifier can exceed about 74%",
        "SEEDS §1",
        "spiral, 3 classes, coordinate noise 0.2",
        "spiral",
    ),
    Claim(
        "hinge_stops_pulling",
        "hinge loss stops pulling once margins are met",
        "lecture slides (SEEDS §3)",
        "linear classifier, multiclass SVM loss",
        "losses",
    ),
    Claim(
        "ce_l2_always_pull",
        "cross-entropy and L2 always pull",
        "lecture slides (SEEDS §3)",
        "linear classifier, softmax cross-entropy; L2 penalty",
        "losses",
    ),
    Claim(
        "l2_prefers_spread",
        "L2 prefers the spread-out weight vector of two that score an input identically",
        "lecture slides (SEEDS §3)",
        "x = (1,1,1,1), w1 = (1,0,0,0), w2 = (.25,.25,.25,.25)",
        "regularization",
    ),
    Claim(
        "gradient_check",
        "check the analytic gradient against the numerical one (centred differences)",
        "lecture and exercise slides (SEEDS §4)",
        "every fnet layer, loss, regularizer and ready model",
        "gradcheck",
    ),
    Claim(
        "templates",
        "a linear classifier's rows of W are one image-shaped template per class",
        "lecture slides (SEEDS §2)",
        "Linear(784,10) on MNIST (CIFAR-10 when present)",
        "templates",
    ),
    Claim(
        "sigmoid_local_gradient",
        "the sigmoid gate's local gradient is s(1-s); gradients multiply along the graph",
        "lecture slides (SEEDS §2, §5)",
        "sigmoid neuron w0=2, x0=-1, w1=-3, x1=-2, w2=-3",
        "graph",
    ),
    Claim(
        "graph_optimizations",
        "a framework's graph allows dead-code elimination and memory planning; autodiff "
        "builds the gradient graph from the forward graph",
        "lecture slides (SEEDS §5)",
        "one training step of the 784-200-tanh-10 MLP under jax.jit",
        "graph",
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
