"""Training: objectives, a pure train step, ``fit`` (one compiled call per epoch), ``evaluate``.

::

    objective = fnet.train.supervised(model, fnet.losses.softmax_cross_entropy)
    params, state, opt_state, history = fnet.fit(
        objective, params, optax.sgd(0.1), x, y, key=jax.random.key(0), epochs=10,
        batch_size=100,
    )
    fnet.evaluate(model, params, x_test, y_test)

See ``docs/training.md``.
"""

from fnet.train.engine import EpochEngine, StepsPerCall
from fnet.train.epoch import BatchPlan, Remainder, batch_plan
from fnet.train.evaluate import evaluate, evaluate_objective
from fnet.train.fit import FitResult, fit
from fnet.train.hooks import Hook, every_k_epochs
from fnet.train.objective import Metrics, Objective, Supervised, correct_predictions, supervised
from fnet.train.step import ShardedObjective, StepFn, TrainState, train_step

__all__ = [
    "BatchPlan",
    "EpochEngine",
    "FitResult",
    "Hook",
    "Metrics",
    "Objective",
    "Remainder",
    "ShardedObjective",
    "StepFn",
    "StepsPerCall",
    "Supervised",
    "TrainState",
    "batch_plan",
    "correct_predictions",
    "evaluate",
    "evaluate_objective",
    "every_k_epochs",
    "fit",
    "supervised",
    "train_step",
]
