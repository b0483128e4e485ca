"""Training: objectives, a pure train step, ``fit`` (one compiled call per epoch), ``evaluate``.

::

    objective = fnet.train.supervised(model, fnet.losses.softmax_cross_entropy)
    params, state, opt_state, history = fnet.fit(
        objective, params, optax.sgd(0.1), x, y, key=jax.random.key(0), epochs=10,
        batch_size=100,
    )
    fnet.evaluate(model, params, x_test, y_test)
    scores = fnet.train.predict(model, params, x_test)  # (N, C), in batches

See ``docs/training.md``.
"""

from fnet.train.callbacks import EarlyStopping, KeepBest
from fnet.train.engine import EpochEngine, StepsPerCall
from fnet.train.epoch import BatchPlan, Remainder, batch_plan
from fnet.train.evaluate import evaluate, evaluate_objective
from fnet.train.fit import FitResult, fit
from fnet.train.guard import NonFiniteError, NonFiniteWarning
from fnet.train.hooks import Hook, StopTraining, every_k_epochs
from fnet.train.logs import CSVLogger, JSONLLogger, TensorBoardLogger
from fnet.train.objective import Metrics, Objective, Supervised, correct_predictions, supervised
from fnet.train.predict import predict
from fnet.train.resume import RestoredParams, restore_params
from fnet.train.step import ShardedObjective, StepFn, TrainState, train_step

__all__ = [
    "BatchPlan",
    "CSVLogger",
    "EarlyStopping",
    "EpochEngine",
    "FitResult",
    "Hook",
    "JSONLLogger",
    "KeepBest",
    "Metrics",
    "NonFiniteError",
    "NonFiniteWarning",
    "Objective",
    "Remainder",
    "RestoredParams",
    "ShardedObjective",
    "StepFn",
    "StepsPerCall",
    "StopTraining",
    "Supervised",
    "TensorBoardLogger",
    "TrainState",
    "batch_plan",
    "correct_predictions",
    "evaluate",
    "evaluate_objective",
    "every_k_epochs",
    "fit",
    "predict",
    "restore_params",
    "supervised",
    "train_step",
]
