"""Per-example gradients and gradient-noise statistics (``jax.vmap`` of ``jax.grad``).

* :func:`grads`: materialised per-example gradients (leading example axis).
* :func:`norms`: per-example gradient norms, memory-lean (chunked vmap, or the dense-layer
  trick with no per-example gradient at all).
* :func:`clip_and_average`: per-example clipping, averaging, Gaussian noise (DP-SGD).
* :func:`stats`: ``G``, ``tr(Sigma)``, ``B_simple``, ``B_noise``, mini-batch variance under
  an explicit sampling scheme; :func:`tracker` records them during training.

The loss is fnet's ``Objective`` (``objective(params, state, x, y, key, *, train)``, what
``fnet.fit`` takes; :func:`from_objective` chooses ``train=``) or a plain ``loss_fn(params,
x, y) -> scalar`` over a batch; :func:`model_loss` builds one that also exposes the model
for the dense trick. The math is in ``docs/per_example.md``.
"""

from fnet.losses import BatchReduction
from fnet.per_example.gradients import (
    Method,
    clip_and_average,
    clipped_gradient_fn,
    grads,
    norms,
    uses_dense_trick,
)
from fnet.per_example.objective import (
    LossFn,
    ModelLoss,
    ObjectiveLoss,
    Reduction,
    from_objective,
    model_loss,
)
from fnet.per_example.sampling import (
    SAMPLINGS,
    Sampling,
    expected_cosine,
    minibatch_variance,
    sample_batch,
)
from fnet.per_example.statistics import GradientStats, stats
from fnet.per_example.tracking import Tracker, tracker

__all__ = [
    "SAMPLINGS",
    "BatchReduction",
    "GradientStats",
    "LossFn",
    "Method",
    "ModelLoss",
    "ObjectiveLoss",
    "Reduction",
    "Sampling",
    "Tracker",
    "clip_and_average",
    "clipped_gradient_fn",
    "expected_cosine",
    "from_objective",
    "grads",
    "minibatch_variance",
    "model_loss",
    "norms",
    "sample_batch",
    "stats",
    "tracker",
    "uses_dense_trick",
]
