"""The gradient check of SEEDS §4 over every fnet layer, loss, regularizer and ready model:
the maximum relative error per parameter/input leaf, as a table.

Layers and models are checked the exercise slides' way with
``fnet.gradcheck.check_jacobian``: a small random input, the Jacobian's columns by
centred finite differences of the forward pass, its rows by the backward pass fed unit
vectors, compared entry by entry (with respect to the parameters AND the input).
Losses, regularizers and the ready models under a loss are checked with
``fnet.gradcheck.check_grad``. Everything runs in float64; the step is fnet's default
``h_i = eps^(1/3) max(|x_i|, 1)``; full runs also report the error with the slides'
step ``h_i = sqrt(eps) max(|x_i|, 1)`` (see ``fnet.gradcheck`` for why it is noisier).

Run: ``python -m experiments.gradcheck [--quick] [--out runs/gradcheck]``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import fnet
from experiments import cli, plotting, records
from experiments.claims import claim_row
from fnet import gradcheck, layers, losses, models, regularizers

NAME = "gradcheck"
RTOL = 1e-6


class Case(NamedTuple):
    """One check: ``build(key) -> (f, x)``; ``kind`` is "jacobian" or "gradient"."""

    name: str
    group: str
    kind: str
    build: Callable[[jax.Array], tuple[Callable[[Any], Any], Any]]


def _normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(key, shape, jnp.float64)


def _layer(make: Callable[[], Any], shape: tuple[int, ...], **apply_kw: Any) -> Callable:
    """Jacobian of a layer's output w.r.t. ``{"params", "x"}`` (state held fixed)."""

    def build(key: jax.Array):
        model = make()
        k_init, k_x, k_drop = jax.random.split(key, 3)
        if fnet.is_stateful(model):
            _, params, state = model.init(k_init, shape)
            x = {"params": params, "x": _normal(k_x, shape)}
            return (lambda t: model.apply(t["params"], state, t["x"], train=True)[0]), x
        _, params = model.init(k_init, shape)
        kw = dict(apply_kw)
        if kw.get("train"):
            kw["key"] = k_drop
        return (lambda t: model.apply(t["params"], t["x"], **kw)), {
            "params": params,
            "x": _normal(k_x, shape),
        }

    return build


def _loss(fn: Callable, kind: str) -> Callable:
    """Gradient of a mean loss w.r.t. its scores (and targets, for MSE)."""

    def build(key: jax.Array):
        k_s, k_y = jax.random.split(key)
        scores = _normal(k_s, (6, 4))
        if kind == "class":
            y = jax.random.randint(k_y, (6,), 0, 4)
            return (lambda s: fn(s, y)), scores
        if kind == "binary":
            y = jnp.where(jax.random.bernoulli(k_y, 0.5, (6,)), 1, -1)
            return (lambda s: fn(s[:, 0], y)), scores
        if kind == "regression":
            return (lambda t: fn(t["p"], t["t"])), {"p": scores, "t": _normal(k_y, (6, 4))}
        raise ValueError(kind)

    return build


def _per_example(fn: Callable, kind: str) -> Callable:
    """``sum_i loss_per_example(s_i, y_i)`` via ``jax.vmap``, w.r.t. the scores."""

    def build(key: jax.Array):
        k_s, k_y = jax.random.split(key)
        scores = _normal(k_s, (5, 3))
        if kind == "class":
            y = jax.random.randint(k_y, (5,), 0, 3)
            return (lambda s: jnp.sum(jax.vmap(fn)(s, y))), scores
        if kind == "binary":
            y = jnp.where(jax.random.bernoulli(k_y, 0.5, (5,)), 1, -1)
            return (lambda s: jnp.sum(jax.vmap(fn)(s[:, 0], y))), scores
        t = _normal(k_y, (5, 3))
        return (lambda s: jnp.sum(jax.vmap(fn)(s, t))), scores

    return build


def _regularizer(fn: Callable) -> Callable:
    def build(key: jax.Array):
        _, params = models.mlp([5], 3).init(key, (-1, 4))
        return fn, params

    return build


def _model_loss(make: Callable[[], Any], shape: tuple[int, ...], n_classes: int) -> Callable:
    """Mean cross-entropy of a ready model w.r.t. its params (the training gradient)."""

    def build(key: jax.Array):
        model = make()
        k_init, k_x, k_y = jax.random.split(key, 3)
        _, params = model.init(k_init, shape)
        x = _normal(k_x, shape)
        y = jax.random.randint(k_y, (shape[0],), 0, n_classes)
        return (lambda p: losses.softmax_cross_entropy(model.apply(p, x), y)), params

    return build


def cases() -> list[Case]:
    """Every public layer, combinator, loss, regularizer and ready model of fnet."""
    L = layers
    lay = [
        ("Dense", lambda: L.Dense(5), (4, 3), {}),
        ("Conv2D", lambda: L.Conv2D(3, 3), (2, 5, 5, 2), {}),
        ("Conv2D strided VALID", lambda: L.Conv2D(2, (3, 2), 2, "VALID"), (2, 7, 6, 2), {}),
        ("MaxPool", lambda: L.MaxPool(2), (2, 4, 4, 2), {}),
        ("AvgPool SAME", lambda: L.AvgPool(3, 2, "SAME"), (2, 5, 5, 2), {}),
        ("Flatten", lambda: L.Flatten(), (3, 2, 4), {}),
        ("Reshape", lambda: L.Reshape((4, 2)), (3, 8), {}),
        ("Dropout (train)", lambda: L.Dropout(0.3), (4, 6), {"train": True}),
        ("LayerNorm", lambda: L.LayerNorm(), (4, 5), {}),
        ("BatchNorm (train)", lambda: L.BatchNorm(), (6, 3), {}),
        ("Relu", lambda: L.Relu(), (4, 5), {}),
        ("Tanh", lambda: L.Tanh(), (4, 5), {}),
        ("Sigmoid", lambda: L.Sigmoid(), (4, 5), {}),
        ("LeakyRelu", lambda: L.LeakyRelu(0.1), (4, 5), {}),
        ("Elu", lambda: L.Elu(), (4, 5), {}),
        ("Maxout", lambda: L.Maxout(3), (4, 6), {}),
        ("Softmax", lambda: L.Softmax(), (4, 5), {}),
        ("LogSoftmax", lambda: L.LogSoftmax(), (4, 5), {}),
        ("Activation('tanh')", lambda: L.Activation("tanh"), (4, 5), {}),
        ("serial", lambda: fnet.serial(L.Dense(4), L.Tanh(), L.Dense(2)), (3, 5), {}),
        (
            "parallel (concat)",
            lambda: fnet.parallel(L.Dense(2), L.Dense(3)),
            (3, 4),
            {},
        ),
        ("residual", lambda: fnet.residual(L.Dense(4), L.Tanh()), (3, 4), {}),
        ("models.linear", lambda: models.linear(3), (4, 2, 3), {}),
        ("models.mlp relu", lambda: models.mlp([6, 5], 3, "relu"), (4, 7), {}),
        ("models.mlp maxout", lambda: models.mlp([4], 3, "maxout"), (4, 5), {}),
        (
            "models.convnet",
            lambda: models.convnet(3, channels=(2, 3), hidden=4),
            (2, 8, 8, 1),
            {},
        ),
    ]
    out = [Case(n, "layer / model", "jacobian", _layer(m, s, **kw)) for n, m, s, kw in lay]
    out += [
        Case("softmax_cross_entropy", "loss", "gradient",
             _loss(losses.softmax_cross_entropy, "class")),
        Case("multiclass_hinge", "loss", "gradient", _loss(losses.multiclass_hinge, "class")),
        Case("binary_logistic", "loss", "gradient", _loss(losses.binary_logistic, "binary")),
        Case("mean_squared_error", "loss", "gradient",
             _loss(losses.mean_squared_error, "regression")),
        Case("softmax_cross_entropy_per_example", "loss", "gradient",
             _per_example(losses.softmax_cross_entropy_per_example, "class")),
        Case("multiclass_hinge_per_example", "loss", "gradient",
             _per_example(losses.multiclass_hinge_per_example, "class")),
        Case("binary_logistic_per_example", "loss", "gradient",
             _per_example(losses.binary_logistic_per_example, "binary")),
        Case("mean_squared_error_per_example", "loss", "gradient",
             _per_example(losses.mean_squared_error_per_example, "regression")),
        Case("regularizers.l2", "regularizer", "gradient", _regularizer(regularizers.l2)),
        Case("regularizers.l1", "regularizer", "gradient", _regularizer(regularizers.l1)),
        Case("linear + cross-entropy", "model + loss", "gradient",
             _model_loss(lambda: models.linear(10), (8, 28, 28), 10)),
        Case("784-200-tanh-10 + cross-entropy", "model + loss", "gradient",
             _model_loss(lambda: models.mlp([200], 10, "tanh"), (8, 784), 10)),
        Case("convnet + cross-entropy", "model + loss", "gradient",
             _model_loss(lambda: models.convnet(10, channels=(4, 8), hidden=16),
                         (4, 12, 12, 1), 10)),
    ]  # fmt: skip
    return out


QUICK = ("Dense", "Relu", "multiclass_hinge", "linear + cross-entropy")


def coverage(checked: Sequence[str]) -> list[str]:
    """Public layer constructors of ``fnet.layers`` that no case checks."""
    names = [n for n in layers.__all__ if n[:1].isupper()]
    text = " ".join(checked)
    return [n for n in names if n not in text]


def run_case(case: Case, seed: int, step_scale: float) -> Any:
    """The report of one case (x64 on for the duration of the check)."""
    with jax.enable_x64(True):
        f, x = case.build(jax.random.key(seed))
        check = gradcheck.check_jacobian if case.kind == "jacobian" else gradcheck.check_grad
        # Big leaves (the 784x200 weight) are subsampled: 300 random coordinates each.
        return check(f, x, rtol=RTOL, step_scale=step_scale, max_coords_per_leaf=300)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json``, the table and a figure."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    quick = args.quick
    all_cases = cases()
    chosen = [c for c in all_cases if c.name in QUICK] if quick else all_cases
    config = {
        "quick": quick,
        "seed": args.seed,
        "rtol": RTOL,
        "step": "h_i = eps^(1/3) * max(|x_i|, 1) (fnet default)",
        "slides_step_also": not quick,
        "max_coords_per_leaf": 300,
        "dtype": "float64",
        "cases": [c.name for c in chosen],
    }
    out = pathlib.Path(args.out)
    rows, per_case = [], {}
    for case in chosen:
        print(f"[{NAME}] {case.name}")
        report = run_case(case, args.seed, gradcheck.DEFAULT_STEP_SCALE)
        slides = None
        if not quick:
            slides = run_case(case, args.seed, gradcheck.SLIDES_STEP_SCALE).max_rel_error
        per_case[case.name] = {
            "group": case.group,
            "kind": case.kind,
            "max_rel_error": report.max_rel_error,
            "passed": report.passed,
            "n_checked": report.n_checked,
            "max_rel_error_slides_step": slides,
        }
        for leaf in report.leaves.values():
            rows.append({
                "case": case.name,
                "kind": case.kind,
                "leaf": leaf.path,
                "shape": list(leaf.shape),
                "checked": leaf.n_checked,
                "max_rel_error": leaf.max_rel_error,
                "passed": bool(leaf.max_rel_error <= RTOL),
            })  # fmt: skip
    table = ["| case | check | leaf | shape | entries | max rel. error | pass |",
             "| --- | --- | --- | --- | ---: | ---: | --- |"]  # fmt: skip
    for r in rows:
        table.append(
            f"| {r['case']} | {r['kind']} | {r['leaf']} | {tuple(r['shape'])} | {r['checked']} "
            f"| {r['max_rel_error']:.1e} | {'yes' if r['passed'] else 'NO'} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradcheck_table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))

    fig, ax = plt.subplots(figsize=(7, 0.22 * len(per_case) + 1.2))
    names = list(per_case)
    errs = [max(per_case[n]["max_rel_error"], 1e-17) for n in names]
    ax.barh(np.arange(len(names)), errs, color="tab:blue", label="fnet step eps^(1/3)")
    if not quick:
        slides_errs = [max(per_case[n]["max_rel_error_slides_step"], 1e-17) for n in names]
        ax.scatter(slides_errs, np.arange(len(names)), color="tab:red", s=10, zorder=3,
                   label="slides' step sqrt(eps)")  # fmt: skip
    ax.axvline(RTOL, color="k", ls=":", label=f"tolerance {RTOL:g}")
    ax.set_yticks(np.arange(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("max relative error (float64)")
    # Above the axes, so that no bar is hidden behind it.
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False)
    figures = [plotting.save_figure(fig, out, "gradcheck_errors.png")]

    n_pass = sum(v["passed"] for v in per_case.values())
    worst = max(v["max_rel_error"] for v in per_case.values())
    missing = coverage([c.name for c in all_cases])
    result = (
        f"{n_pass}/{len(per_case)} checks pass ({len(rows)} leaves); worst max relative error "
        f"{worst:.1e} (tolerance {RTOL:g}, float64)"
    )
    if not quick:
        worst_slides = max(v["max_rel_error_slides_step"] for v in per_case.values())
        result += f"; with the slides' step sqrt(eps) the worst is {worst_slides:.1e}"
    if missing:
        result += f"; layers not covered: {missing}"
    claims = [
        claim_row(
            "gradient_check",
            result,
            "reproduced" if n_pass == len(per_case) and not missing else "not reproduced",
            setting=f"{len(per_case)} cases: layers, combinators, losses, regularizers, models",
        )
    ]
    return records.write_metrics(
        out, config, {"cases": per_case, "leaves": rows, "uncovered_layers": missing},
        {"used": [{"dataset": "random inputs (float64)"}], "skipped": []}, timer(), name=NAME,
        claims=claims, headline=[f"gradcheck: {result}"], figures=figures,
    )  # fmt: skip


if __name__ == "__main__":
    cli.main(main)
