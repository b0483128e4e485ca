"""A complete MNIST run with fnet: a convnet trained with validation, early stopping,
checkpoints and a resume, then batched prediction, a params-only restore and per-example
gradient norms.

Run from the repository root::

    python examples/mnist_convnet.py --quick      # seconds: a tiny net on 1,000 images
    python examples/mnist_convnet.py              # minutes: the full convnet

The MNIST files are looked up in ``--data-dir``, then ``$FNET_DATA_DIR``, then
``../shared/data/mnist`` beside the repository (the official 60,000 training images, or
the 5,000-image subset); nothing is downloaded.

What it shows, step by step:

1. data: ``fnet.datasets`` (checksummed test split; the training set shuffled, since the
   subset is sorted by class), scaled to [0, 1], NHWC ``(N, 28, 28, 1)``, with a held-out
   validation split;
2. ``fnet.models.convnet`` trained by ``fnet.fit`` with ``validation=``, early stopping
   on the validation loss (restoring the best epoch's params), a JSON Lines metrics log
   and a checkpoint directory; the training is run in two calls, the second RESUMING the
   first (``fit: resuming from epoch ... of ...``), as after an interruption;
3. ``fnet.evaluate`` and ``fnet.predict`` on the test set (they agree);
4. ``fnet.restore_params``: the checkpointed params read back without the optimizer, the
   model rebuilt from the configuration stored with them;
5. ``fnet.per_example.norms``: per-example gradient norms ``|g_i|`` of the loss on test
   examples, for misclassified and correctly classified ones, and the largest.

Run it again with the same ``--run-dir`` and it resumes (or reports the run complete);
``--fresh`` starts over there.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnet
from fnet import datasets
from fnet.losses import softmax_cross_entropy

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

QUICK = {"n_train": 600, "n_val": 200, "n_test": 300, "channels": [4, 8], "hidden": 16,
         "epochs": 4, "batch_size": 200, "patience": 2, "lr": 2e-2, "n_norms": 50}  # fmt: skip
FULL = {"n_train": None, "n_val": 5000, "n_test": None, "channels": [32, 64], "hidden": 128,
        "epochs": 20, "batch_size": 100, "patience": 3, "lr": 1e-3, "n_norms": 1000}  # fmt: skip


def load(data_dir: str | None, cfg: dict) -> tuple:
    """(x_train, y_train, x_val, y_val, x_test, y_test): NHWC float32 in [0, 1], int32."""
    if data_dir is None and not os.environ.get(datasets.ENV_VAR) and SHARED_MNIST.is_dir():
        data_dir = str(SHARED_MNIST)
    train = datasets.mnist_train_or_subset(data_dir=data_dir)
    test = datasets.mnist("test", data_dir=data_dir)
    perm = np.asarray(jax.random.permutation(jax.random.key(0), len(train.labels)))
    x = datasets.scale_pixels(train.inputs)[perm][..., None]  # (N, 28, 28, 1)
    y = np.asarray(train.labels)[perm]
    n_val = min(cfg["n_val"], len(y) // 5)
    n_train = len(y) - n_val if cfg["n_train"] is None else min(cfg["n_train"], len(y) - n_val)
    x_test = datasets.scale_pixels(test.inputs)[..., None][: cfg["n_test"]]
    y_test = np.asarray(test.labels)[: cfg["n_test"]]
    return x[:n_train], y[:n_train], x[-n_val:], y[-n_val:], x_test, y_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny net on 1,000 images")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST files")
    parser.add_argument("--run-dir", default=None, help="checkpoints and metrics.jsonl")
    parser.add_argument("--fresh", action="store_true", help="start over in --run-dir")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    run_dir = pathlib.Path(args.run_dir or f"runs/mnist_convnet{'_quick' if args.quick else ''}")

    # 1. Data.
    x, y, x_val, y_val, x_test, y_test = load(args.data_dir, cfg)
    print(f"data: train {x.shape}, validation {x_val.shape}, test {x_test.shape}")

    # 2. Model, objective, optimizer; fit in two calls (the second resumes the first).
    model = fnet.models.convnet(10, channels=cfg["channels"], hidden=cfg["hidden"])
    _, params = model.init(jax.random.key(1), (-1, 28, 28, 1))
    objective = fnet.train.supervised(model, softmax_cross_entropy)
    optimizer = optax.adam(cfg["lr"])
    config = {"channels": cfg["channels"], "hidden": cfg["hidden"], "n_classes": 10}
    stopper = fnet.train.EarlyStopping("val_loss", patience=cfg["patience"], restore_best=True)
    common = dict(
        key=jax.random.key(2),
        batch_size=cfg["batch_size"],
        validation=(x_val, y_val),
        checkpoint_dir=run_dir / "checkpoints",
        extra=config,  # stored with every checkpoint: enough to rebuild the model
        on_epoch_end=[stopper, fnet.train.JSONLLogger(run_dir / "metrics.jsonl")],
        progress=not args.quick,
    )
    first = cfg["epochs"] // 2
    fnet.fit(objective, params, optimizer, x, y, epochs=first,
             resume="fresh" if args.fresh else "auto", **common)  # fmt: skip
    # ... an interruption here loses nothing: the same call resumes after epoch `first`.
    params, _, _, history = fnet.fit(
        objective, params, optimizer, x, y, epochs=cfg["epochs"], **common
    )
    for e, tl, vl, va in zip(history["epoch"], history["train_loss"], history["val_loss"],
                             history["val_accuracy"], strict=True):  # fmt: skip
        print(f"epoch {e:2d}: train loss {tl:.4f}, val loss {vl:.4f}, val accuracy {va:.2%}")
    if "stopped" in history:
        print(history["stopped"])

    # 3. Test accuracy, and batched prediction.
    result = fnet.evaluate(model, params, x_test, y_test)
    scores = fnet.predict(model, params, x_test, batch_size=256)  # (N_test, 10)
    predicted = np.asarray(jnp.argmax(scores, axis=-1))
    assert int(np.sum(predicted != y_test)) == result["error_count"]
    print(f"test: loss {result['loss']:.4f}, accuracy {result['accuracy']:.2%} "
          f"({result['error_count']} errors of {result['n']})")  # fmt: skip

    # 4. The checkpoint's params, without the optimizer; the model rebuilt from `extra`.
    restored = fnet.restore_params(run_dir / "checkpoints")
    rebuilt = fnet.models.convnet(
        restored.extra["n_classes"], channels=restored.extra["channels"],
        hidden=restored.extra["hidden"],
    )  # fmt: skip
    same = np.array_equal(fnet.predict(rebuilt, restored.params, x_test[:8]), scores[:8])
    how = "the same" if same else "differently (early stopping returned an earlier epoch)"
    print(f"restored epoch {restored.step} without the optimizer; rebuilt model predicts {how}")

    # 5. Per-example gradient norms |g_i| of the test loss (one vmap'd chunk at a time).
    loss_fn = fnet.per_example.model_loss(model, softmax_cross_entropy)
    n = min(len(y_test), cfg["n_norms"])
    g_norms = np.asarray(fnet.per_example.norms(loss_fn, params, x_test[:n], y_test[:n]))
    wrong = predicted[:n] != y_test[:n]
    top = np.argsort(-g_norms)[:5]
    mean_wrong = g_norms[wrong].mean() if wrong.any() else float("nan")
    mean_right = g_norms[~wrong].mean() if (~wrong).any() else float("nan")
    print(f"per-example gradient norms on {n} test images: median {np.median(g_norms):.3g}, "
          f"max {g_norms.max():.3g}; mean over misclassified {mean_wrong:.3g}, "
          f"over correct {mean_right:.3g}")  # fmt: skip
    print("largest |g_i|:", ", ".join(
        f"#{i} (label {y_test[i]}, predicted {predicted[i]}, |g|={g_norms[i]:.3g})" for i in top
    ))  # fmt: skip

    summary = {"test_accuracy": result["accuracy"], "epochs": history["epoch"][-1],
               "restored_step": restored.step, "stopped": history.get("stopped")}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
