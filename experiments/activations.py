"""Activation functions on a deeper MLP (5 hidden layers of 100 units): sigmoid, tanh,
ReLU, Leaky ReLU, ELU and Maxout, on MNIST and on the spiral: loss curves and the
number of SGD steps to reach a target training loss. Tests the slides' "ReLU converges
about 6x faster than sigmoid" and reports the measured ratio, whatever it is.

Every net has the same init (``glorot_normal``, the slides' rule), the same plain SGD
(lr 0.1) and the same step budget; only the activation differs. Steps to target count
whole epochs: the first epoch whose mean training loss is at or below the target.

Run: ``python -m experiments.activations [--quick] [--data-dir DIR] [--out DIR]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import cli, plotting, records
from experiments.claims import claim_row
from experiments.data import DataUnavailable, load_image_data, load_spiral, spiral_info
from fnet import losses, models, train

NAME = "activations"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout")
DEPTH, WIDTH = 5, 100


LADDER = {"spiral": (1.0, 0.7, 0.5, 0.3), "mnist": (1.5, 1.0, 0.5, 0.3)}


def steps_to(history: dict, target: float, steps_per_epoch: int) -> int | None:
    """Steps until the first epoch whose mean training loss is ``<= target``, or None."""
    for epoch, loss in enumerate(history["train_loss"], start=1):
        if loss <= target:
            return epoch * steps_per_epoch
    return None


def run_task(
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    activations: Sequence[str],
    n_classes: int,
    batch_size: int,
    epochs: int,
    target: float,
    seeds: Sequence[int],
    test: tuple[np.ndarray, np.ndarray] | None = None,
    depth: int = DEPTH,
    ladder: Sequence[float] = (),
) -> dict[str, Any]:
    """Train every activation on one task; return curves and steps to ``target``."""
    n = len(y)
    steps_per_epoch = -(-n // batch_size)
    optimizer = optax.sgd(0.1)
    out: dict[str, Any] = {}
    for act in activations:
        model = models.mlp([WIDTH] * depth, n_classes, act)
        objective = train.supervised(model, losses.softmax_cross_entropy)
        runs = []
        for seed in seeds:
            print(f"[{NAME}] {task}: {act}, seed {seed}")
            _, params = model.init(jax.random.key(seed), (-1, *x.shape[1:]))
            fit = train.fit(
                objective, params, optimizer, x, y, key=jax.random.key(seed + 1),
                epochs=epochs, batch_size=batch_size,
            )  # fmt: skip
            run = {
                "seed": seed,
                "steps_to_target": steps_to(fit.history, target, steps_per_epoch),
                "steps_to_ladder": {
                    str(t): steps_to(fit.history, t, steps_per_epoch) for t in ladder
                },
                "train_loss": fit.history["train_loss"],
                "final_train_accuracy": fit.history["train_accuracy"][-1],
            }
            if test is not None:
                run["test_accuracy"] = train.evaluate(model, fit.params, *test)["accuracy"]
            runs.append(run)
        reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
        out[act] = {
            "runs": runs,
            "mean_steps_to_ladder": {
                str(t): (
                    float(np.mean([r["steps_to_ladder"][str(t)] for r in runs]))
                    if all(r["steps_to_ladder"][str(t)] is not None for r in runs)
                    else None
                )
                for t in ladder
            },
            "steps_to_target": [r["steps_to_target"] for r in runs],
            "mean_steps_to_target": float(np.mean(reached)) if len(reached) == len(runs) else None,
        }
    return {
        "ladder": list(ladder),
        "depth": depth,
        "activations": out,
        "target_loss": target,
        "steps_per_epoch": steps_per_epoch,
        "budget_steps": steps_per_epoch * epochs,
    }


def ladder_ratio(task: dict[str, Any], slow: str, fast: str) -> tuple[float, float] | None:
    """``(target, steps(slow) / steps(fast))`` at the lowest loss of the ladder that both
    reached (in every seed), or None."""
    s = task["activations"][slow]["mean_steps_to_ladder"]
    f = task["activations"][fast]["mean_steps_to_ladder"]
    both = [float(t) for t in s if s[t] is not None and f[t] is not None]
    if not both:
        return None
    t = min(both)
    return t, s[str(t)] / f[str(t)]


def ladder_text(task: dict[str, Any]) -> str:
    """E.g. ``"; at loss 0.5 (lowest both reach): 9.8x"`` when it adds information."""
    lr = ladder_ratio(task, "sigmoid", "relu")
    if lr is None or lr[0] == task["target_loss"]:
        return ""
    return f"; at loss {lr[0]:g} (lowest both reach): {lr[1]:.1f}x"


def ratio(task: dict[str, Any], slow: str, fast: str) -> tuple[float, bool]:
    """``(steps(slow) / steps(fast), exact)``; a lower bound (exact False) when ``slow``
    did not reach the target within the budget. NaN when ``fast`` did not either."""
    f = task["activations"][fast]["mean_steps_to_target"]
    s = task["activations"][slow]["mean_steps_to_target"]
    if f is None:
        return float("nan"), False
    if s is None:
        return task["budget_steps"] / f, False
    return s / f, True


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json`` and figures; return the metrics record."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    quick = args.quick
    acts = ("sigmoid", "relu") if quick else ACTIVATIONS
    seeds = [args.seed] if quick else [args.seed, args.seed + 1]
    config = {
        "quick": quick,
        "seed": args.seed,
        "model": f"MLP, {DEPTH} hidden layers of {WIDTH} (maxout: {WIDTH} units of 2 pieces)",
        "activations": list(acts),
        "init": "glorot_normal for every activation",
        "optimizer": "plain SGD, lr 0.1",
        "seeds": seeds,
        "mnist": {"batch_size": 100, "epochs": 2 if quick else 30, "target_loss": 0.3},
        "spiral": {
            "n_per_class": 100,
            "batch_size": 30,
            "epochs": 20 if quick else 300,
            "target_loss": 0.3,
        },
    }
    out = args.out
    tasks: dict[str, Any] = {}
    data_info: dict[str, list] = {"used": [], "skipped": []}

    sp = config["spiral"]
    x_sp, y_sp = load_spiral(sp["n_per_class"], seed=args.seed)
    data_info["used"].append(spiral_info(sp["n_per_class"], 0.2, "angle", "training"))
    tasks["spiral"] = run_task(
        "spiral", x_sp, y_sp, activations=acts, n_classes=3, batch_size=sp["batch_size"],
        epochs=sp["epochs"], target=sp["target_loss"], seeds=seeds, ladder=LADDER["spiral"],
    )  # fmt: skip

    mn = config["mnist"]
    try:
        data = load_image_data(
            "mnist",
            args.data_dir, seed=args.seed, download=args.download,
            max_train=1000 if quick else None, max_test=1000 if quick else None,
        )  # fmt: skip
        print(f"[{NAME}] data: {data.info['note']}")
        data_info["used"].append(data.info)
        tasks["mnist"] = run_task(
            "mnist", data.x_train, data.y_train, activations=acts, n_classes=10,
            batch_size=mn["batch_size"], epochs=mn["epochs"], target=mn["target_loss"],
            seeds=seeds, test=(data.x_test, data.y_test), ladder=LADDER["mnist"],
        )  # fmt: skip
        if not quick:
            tasks["mnist, 2 hidden layers"] = run_task(
                "mnist (2 hidden layers)", data.x_train, data.y_train,
                activations=("sigmoid", "tanh", "relu"), n_classes=10,
                batch_size=mn["batch_size"], epochs=2 * mn["epochs"], target=mn["target_loss"],
                seeds=seeds, test=(data.x_test, data.y_test), depth=2, ladder=LADDER["mnist"],
            )  # fmt: skip
    except DataUnavailable as err:
        print(f"[{NAME}] MNIST part skipped: {err}")
        data_info["skipped"].append({"what": "MNIST part", "why": str(err)})

    # Figures: loss curves (seed 0) per task, and steps to target.
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.6 * len(tasks), 3.4), squeeze=False, layout="constrained"
    )
    for ax, (task, res) in zip(axes[0], tasks.items(), strict=True):
        spe = res["steps_per_epoch"]
        few = len(next(iter(res["activations"].values()))["runs"][0]["train_loss"]) < 5
        for act, r in res["activations"].items():
            loss = r["runs"][0]["train_loss"]
            # A few epochs are a few points: draw them as markers on linear axes.
            ax.plot(np.arange(1, len(loss) + 1) * spe, loss, "o-" if few else "-", label=act)
        ax.axhline(res["target_loss"], color="k", ls=":", lw=1)
        if not few:
            ax.set_yscale("log")
            ax.set_xscale("log")
        ax.set_xlabel("SGD steps (one point per epoch)")
        ax.set_ylabel("training loss (epoch mean)")
        ax.set_title(f"{task}: {res['depth']}x{WIDTH} MLP, dotted = target", fontsize=9)
        ax.legend(fontsize=7)
    figures = [plotting.save_figure(fig, out, "activations_loss.png")]

    # Claims: ReLU vs sigmoid (and tanh, AlexNet's comparison) steps-to-target ratios.
    parts, verdicts, ratios = [], [], {}
    for task, res in tasks.items():
        r, exact = ratio(res, "sigmoid", "relu")
        ratios[task] = {"sigmoid_over_relu": r, "exact": exact}
        steps = res["activations"]["relu"]["mean_steps_to_target"]
        if "tanh" in res["activations"]:
            rt, et = ratio(res, "tanh", "relu")
            ratios[task]["tanh_over_relu"] = rt
            tanh_text = f"; tanh/ReLU {'' if et else '> '}{rt:.1f}x"
        else:
            tanh_text = ""
        if np.isnan(r):
            parts.append(f"{task}: ReLU did not reach loss {res['target_loss']} in budget")
            verdicts.append("none")
            continue
        parts.append(
            f"{task} (depth {res['depth']}): sigmoid/ReLU steps to loss {res['target_loss']}: "
            f"{'' if exact else '> '}{r:.1f}x (ReLU {steps:.0f} steps"
            f"{'' if exact else ', sigmoid never within ' + str(res['budget_steps'])})"
            + tanh_text
            + ladder_text(res)
        )
        if exact and 3 <= r <= 12:
            verdicts.append("match")
        elif r > 12 or (not exact and r > 3):
            verdicts.append("larger")
        elif r > 1:
            verdicts.append("smaller")
        else:
            verdicts.append("none")
    if quick:
        verdict = "not assessed (quick run)"
    elif verdicts and all(v == "match" for v in verdicts):
        verdict = "reproduced"
    elif verdicts and all(v in ("match", "larger") for v in verdicts):
        verdict = (
            "partly: ReLU is faster everywhere; about 6x (within 3-12x) where sigmoid "
            "converges at all, far more for 5-layer nets, where plain SGD with glorot init "
            "leaves sigmoid on its initial plateau"
            if "match" in verdicts
            else "partly: ReLU is faster, by more than 6x here (plain SGD and glorot init "
            "leave a 5-layer sigmoid net on its initial plateau)"
        )
    elif verdicts and all(v in ("match", "larger", "smaller") for v in verdicts):
        verdict = (
            "partly: ReLU is faster in every setting, but the factor depends on depth and "
            "task (see the ratios); a deep sigmoid net stays on its initial plateau"
        )
    elif any(v in ("match", "larger", "smaller") for v in verdicts):
        verdict = "partly: ReLU faster in some settings only"
    else:
        verdict = "not reproduced"
    claims = [
        claim_row(
            "relu_6x_sigmoid",
            "; ".join(parts),
            verdict,
            setting=f"MLPs of {DEPTH} (and 2) hidden layers of {WIDTH}, plain SGD lr 0.1",
        )
    ]
    headline = [f"activations: {p}" for p in parts]
    return records.write_metrics(
        out, config, {"tasks": tasks, "ratios": ratios}, data_info, timer(), name=NAME,
        claims=claims, headline=headline, figures=figures,
    )  # fmt: skip


if __name__ == "__main__":
    cli.main(main)
