"""Multiclass SVM (hinge) vs softmax cross-entropy on the same linear MNIST model:
accuracy, and the behaviour the slides describe: hinge stops pulling once an example's
margins are met (its loss and gradient are exactly 0); cross-entropy keeps pulling.

After every epoch the whole training set is measured with fnet's own functions:
per-example losses (``reduction="none"``), margins, and per-example gradient norms
(``fnet.per_example.norms``): the fraction of examples that no longer pull at all, the
gradient of those whose margins are met, and the weight norm.

Run: ``python -m experiments.losses [--quick] [--data-dir DIR] [--out runs/losses]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import cli, plotting, records
from experiments.claims import claim_row
from experiments.data import DataUnavailable, load_image_data
from fnet import losses, models, per_example, regularizers, train

NAME = "losses"
DELTA = 1.0
LOSSES = {
    "hinge": losses.multiclass_hinge,
    "cross-entropy": losses.softmax_cross_entropy,
}
PER_EXAMPLE = {
    "hinge": lambda s, y: losses.multiclass_hinge(s, y, DELTA, reduction="none"),
    "cross-entropy": lambda s, y: losses.softmax_cross_entropy(s, y, reduction="none"),
}


def margins(scores: jax.Array, y: jax.Array) -> jax.Array:
    """``s_y - max_{j != y} s_j`` per example: the margin is met when it is ``>= Delta``."""
    correct = jnp.take_along_axis(scores, y[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, scores.shape[1], dtype=bool), -jnp.inf, scores)
    return correct - jnp.max(others, axis=1)


def pulling_stats(model: Any, kind: str, params: Any, x: np.ndarray, y: np.ndarray) -> dict:
    """Per-example losses, margins and gradient norms over the whole set ``(x, y)``."""
    scores = model.apply(params, x)
    per_loss = np.asarray(PER_EXAMPLE[kind](scores, y))
    met = np.asarray(margins(scores, y)) >= DELTA
    grad_norms = np.asarray(
        per_example.norms(per_example.model_loss(model, LOSSES[kind]), params, x, y)
    )
    w = params["dense_0"]["w"]
    return {
        "frac_zero_loss": float(np.mean(per_loss == 0)),
        "frac_zero_grad": float(np.mean(grad_norms == 0)),
        "frac_margin_met": float(np.mean(met)),
        "max_grad_norm_margin_met": float(grad_norms[met].max()) if met.any() else float("nan"),
        "min_grad_norm_margin_met": float(grad_norms[met].min()) if met.any() else float("nan"),
        "mean_grad_norm_margin_met": float(grad_norms[met].mean()) if met.any() else float("nan"),
        "w_norm": float(jnp.linalg.norm(w)),
        "l2_grad_norm_per_lambda": float(
            jnp.linalg.norm(jax.grad(regularizers.l2)(params)["dense_0"]["w"])
        ),
        "grad_norms": grad_norms,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    quick = args.quick
    config = {
        "quick": quick,
        "seed": args.seed,
        "model": "Linear(784,10) (fnet.models.linear)",
        "losses": {
            "hinge": f"fnet.losses.multiclass_hinge (Delta = {DELTA})",
            "cross-entropy": "fnet.losses.softmax_cross_entropy",
        },
        "optimizer": "plain SGD, lr 0.1, batch 100, no regularization",
        "epochs": 3 if quick else 40,
    }
    out = args.out
    try:
        data = load_image_data(
            "mnist",
            args.data_dir,
            seed=args.seed,
            download=args.download,
            max_train=1000 if quick else None,
            max_test=1000 if quick else None,
        )
    except DataUnavailable as err:
        print(f"[{NAME}] skipped: {err}")
        claims = [
            claim_row(c, "not run", f"not run ({err})")
            for c in ("hinge_stops_pulling", "ce_l2_always_pull")
        ]
        skipped = {"used": [], "skipped": [{"what": "MNIST", "why": str(err)}]}
        return records.write_metrics(out, config, {}, skipped, timer(), name=NAME, claims=claims)
    print(f"[{NAME}] data: {data.info['note']}")

    model = models.linear(10)
    x_tr = jnp.asarray(data.x_train)
    y_tr = jnp.asarray(data.y_train)
    results: dict[str, Any] = {}
    final_norms: dict[str, np.ndarray] = {}
    for kind, loss_fn in LOSSES.items():
        print(f"[{NAME}] training with {kind}")
        _, params = model.init(jax.random.key(args.seed), (-1, 28, 28))
        per_epoch: list[dict] = [pulling_stats(model, kind, params, x_tr, y_tr)]

        def hook(epoch: int, p: Any, state: Any, kind: str = kind, log: list = per_epoch) -> None:
            log.append(pulling_stats(model, kind, p, x_tr, y_tr))

        fit = train.fit(
            train.supervised(model, loss_fn),
            params,
            optax.sgd(0.1),
            data.x_train,
            data.y_train,
            key=jax.random.key(args.seed + 1),
            epochs=config["epochs"],
            batch_size=100,
            on_epoch_end=hook,
        )
        ev = train.evaluate(model, fit.params, data.x_test, data.y_test, loss_fn=loss_fn)
        ev_tr = train.evaluate(model, fit.params, data.x_train, data.y_train, loss_fn=loss_fn)
        final = per_epoch[-1]
        final_norms[kind] = final["grad_norms"]
        results[kind] = {
            "test_accuracy": ev["accuracy"],
            "test_errors": ev["error_count"],
            "train_accuracy": ev_tr["accuracy"],
            "final": {k: v for k, v in final.items() if k != "grad_norms"},
            "per_epoch": {k: [e[k] for e in per_epoch] for k in final if k not in ("grad_norms",)},
            "grad_norm_quantiles": np.quantile(final["grad_norms"], [0, 0.1, 0.5, 0.9, 1]),
        }

    # Figures.
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    fig.subplots_adjust(wspace=0.35)
    for kind, r in results.items():
        pe = r["per_epoch"]
        epochs = np.arange(len(pe["frac_zero_grad"]))
        axes[0].plot(epochs, pe["frac_zero_grad"], label=f"{kind}: gradient exactly 0")
        axes[0].plot(epochs, pe["frac_margin_met"], ls="--", label=f"{kind}: margin >= 1")
        axes[1].plot(epochs, pe["w_norm"], label=kind)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("fraction of training examples")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("||W|| (Frobenius)")
    axes[1].legend(fontsize=8)
    # Per-example gradient norms after training; exact zeros get their own bar at the left.
    floor = 1e-7
    bins = np.concatenate([[floor / 10, floor], np.logspace(np.log10(floor), 1.5, 40)[1:]])
    for kind, g in final_norms.items():
        axes[2].hist(np.maximum(g, floor / 5), bins=bins, alpha=0.6, label=kind)
    axes[2].set_xscale("log")
    axes[2].set_xlabel(f"per-example gradient norm (bar left of {floor:g}: exactly 0)")
    axes[2].set_ylabel("examples")
    axes[2].legend(fontsize=8)
    figures = [plotting.save_figure(fig, out, "losses_pulling.png")]

    h, ce = results["hinge"], results["cross-entropy"]
    hf, cf = h["final"], ce["final"]
    claims = [
        claim_row(
            "hinge_stops_pulling",
            f"after {config['epochs']} epochs {hf['frac_zero_loss']:.1%} of training examples "
            f"have hinge loss exactly 0 and {hf['frac_zero_grad']:.1%} gradient exactly 0; "
            f"largest gradient norm among margin-met examples: {hf['max_grad_norm_margin_met']:g}",
            "reproduced"
            if hf["max_grad_norm_margin_met"] == 0 and hf["frac_zero_grad"] > 0
            else "not reproduced",
        ),
        claim_row(
            "ce_l2_always_pull",
            f"cross-entropy: {cf['frac_zero_grad']:.1%} of examples with zero gradient; smallest "
            f"gradient norm among margin-met examples {cf['min_grad_norm_margin_met']:.2g} "
            f"(> 0); ||W|| {ce['per_epoch']['w_norm'][len(ce['per_epoch']['w_norm']) // 2]:.2f}"
            f" -> {cf['w_norm']:.2f} over the second half (hinge "
            f"{h['per_epoch']['w_norm'][len(h['per_epoch']['w_norm']) // 2]:.2f} -> "
            f"{hf['w_norm']:.2f}); L2's gradient 2W has norm {cf['l2_grad_norm_per_lambda']:.2f}"
            " per unit lambda",
            "reproduced"
            if cf["min_grad_norm_margin_met"] > 0 and cf["l2_grad_norm_per_lambda"] > 0
            else "not reproduced",
        ),
    ]
    headline = [
        f"losses: linear MNIST test accuracy hinge {h['test_accuracy']:.1%} vs cross-entropy "
        f"{ce['test_accuracy']:.1%}; zero-gradient examples hinge {hf['frac_zero_grad']:.1%} "
        f"vs cross-entropy {cf['frac_zero_grad']:.1%}"
    ]
    data_info = {"used": [data.info], "skipped": []}
    return records.write_metrics(
        out,
        config,
        {"results": results},
        data_info,
        timer(),
        name=NAME,
        claims=claims,
        headline=headline,
        figures=figures,
    )


if __name__ == "__main__":
    cli.main(main)
