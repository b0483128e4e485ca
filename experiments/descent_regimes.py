"""SGD (batch 1), mini-batch and full-batch gradient descent, measured with per-example gradients.

On MNIST (where :mod:`experiments.data` finds it; a 4,096-image training set) or
else on the spiral, with an MLP and softmax cross-entropy:

1. Mini-batch gradient variance vs batch size ``B``: measured by sampling against the
   predicted ``tr(Sigma)/B`` (with replacement) and ``tr(Sigma)/B (N-B)/(N-1)`` (without).
2. Training loss vs epochs, gradient evaluations and wall-clock for SGD (B=1), mini-batch
   (B=100) and full batch (B=N), each with its best learning rate from a sweep.
3. The best learning rate as a function of the batch size.
4. Vanilla SGD vs momentum 0.9 (B=100, each with its best learning rate).
5. The noise scales ``B_simple`` and ``B_noise`` over training (McCandlish et al. 2018).
6. Steps to reach a target training loss vs batch size (tuned learning rate per B):
   perfect scaling, diminishing returns, no gain; the critical batch size beside the
   noise scales.
7. Control: the class-sorted training set without shuffling.

Mini-batches are drawn as shuffled epochs (sampling without replacement, the last
incomplete batch of an epoch dropped); the loss is the MEAN cross-entropy over a batch.

Run: ``python -m experiments.descent_regimes [--quick] [--out runs/descent_regimes]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax import lax
from tqdm import tqdm

from experiments import cli, plotting, records
from experiments.data import load_spiral, spiral_info
from fnet import models
from fnet import per_example as pe
from fnet.losses import softmax_cross_entropy
from fnet.per_example import dense_trick
from fnet.train import TrainState, supervised, train_step

NAME = "descent_regimes"


# --------------------------------------------------------------------------- config


def make_config(quick: bool, mnist: bool) -> dict[str, Any]:
    """Sizes of every part; ``quick`` is a smoke run whose numbers mean little."""
    if quick:
        cfg = {
            "n_train": 256,
            "hidden": 16,
            "epochs": 2,
            "lr_grid_exponents": [-6, -4, -2, 0, 2],
            "sweep_lrs_per_batch": 5,
            "mc_samples": 64,
            "hessian_examples": 8,
            "hessian_batch": 128,
            "target_loss": 1.2 if mnist else 0.9,
            "eval_ratio": 1.5,
        }
    else:
        cfg = {
            "n_train": 4096 if mnist else 3 * 1000,
            "hidden": 64 if mnist else 100,
            "epochs": 10,
            "lr_grid_exponents": list(range(-8, 4)),
            "sweep_lrs_per_batch": 6,
            "mc_samples": 128,
            "hessian_examples": 64,
            "hessian_batch": 512,
            "target_loss": 0.35 if mnist else 0.6,
            "eval_ratio": 1.15,
        }
    cfg["mid_batch"] = 100 if not quick else 64
    cfg["batch_base"] = 16 if quick else 2  # batch sizes: powers of this, and N
    cfg["momentum"] = 0.9
    cfg["sampling"] = "without_replacement (shuffled epochs, last partial batch dropped)"
    cfg["loss"] = "softmax cross-entropy, mean over the batch"
    return cfg


# --------------------------------------------------------------------------- data


def load_data(run: cli.Run, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict, bool]:
    """MNIST (flattened, /255) when available, else the spiral; says which and why.

    ``run.image_data`` records MNIST as used, or as skipped with the places looked in;
    the spiral fallback is recorded as used here."""
    mnist = run.image_data("mnist", max_train=cfg["n_train"])
    if mnist is not None:
        x = mnist.x_train.reshape(len(mnist.x_train), -1).astype(np.float32)
        info = mnist.info
        info["why"] = "MNIST files found: " + ", ".join(info["train_files"])
        info["note"] += f"; first {len(x)} shuffled training images used"
        return x, mnist.y_train, info, True
    n_per_class = cfg["n_train"] // 3
    x, y = load_spiral(n_per_class, seed=run.args.seed)
    info = spiral_info(n_per_class, 0.2, "angle", "training set")
    info["why"] = f"MNIST unavailable ({run.skipped[-1]['why']}); fell back to the spiral"
    run.used.append(info)
    return x, y, info, False


# --------------------------------------------------------------------------- training

#: Plain SGD with optional heavy-ball momentum, ``v = mu v + g; p = p - lr v``
#: (``optax.sgd``). ``learning_rate`` and ``momentum`` live in the optimizer state
#: (``optax.inject_hyperparams``), so one compiled trainer runs any of them, and a
#: stack of train states trains several learning rates at once under ``jax.vmap``.
OPTIMIZER = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0)


def init_states(params0: Any, lrs: Sequence[float], momentum: float) -> TrainState:
    """A :class:`fnet.train.TrainState` per learning rate, stacked on a leading axis ``L``."""

    def one(lr: jax.Array) -> TrainState:
        opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
        return TrainState.create(params0, opt)

    return jax.vmap(one)(jnp.asarray(lrs, jnp.float32))


def make_trainer(objective: Any, n: int, batch: int, shuffle: bool = True):
    """A jitted ``run(states, step0, n_steps, key, x, y) -> states``.

    Runs ``n_steps`` steps of :func:`fnet.train.train_step` (``OPTIMIZER``) on every
    stacked train state at once (``jax.vmap``), on shuffled epochs of ``n // batch``
    batches (``shuffle=False``: the data's own order); ``step0`` is the global step the
    run starts at, so a run can be split into segments. One compiled loop per batch size.
    """
    spe = n // batch
    step = jax.vmap(train_step(objective, OPTIMIZER, jit=False), in_axes=(0, None, None, None))

    def perm_for(key, epoch):
        if not shuffle:
            return jnp.arange(n, dtype=jnp.int32)
        return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)

    @jax.jit
    def run(states, step0, n_steps, key, x, y):
        def body(i, carry):
            ts, perm = carry
            s = step0 + i
            if batch >= n:
                xb, yb = x, y
            else:
                j = s % spe
                perm = lax.cond(j == 0, lambda: perm_for(key, s // spe), lambda: perm)
                idx = lax.dynamic_slice(perm, (j * batch,), (batch,))
                xb, yb = x[idx], y[idx]
            ts, _ = step(ts, xb, yb, key)  # the key is unused: no dropout
            return ts, perm

        perm0 = perm_for(key, step0 // spe)
        return lax.fori_loop(0, n_steps, body, (states, perm0))[0]

    return run


def make_evaluator(objective: Any):
    """Jitted full training loss of every stacked parameter set: ``(L,)``; NaN -> inf."""

    @jax.jit
    def evaluate(params, x, y):
        loss = lambda p: objective(p, {}, x, y, None, train=False)[0]
        losses = jax.vmap(loss)(params)
        return jnp.where(jnp.isfinite(losses), losses, jnp.inf)

    return evaluate


class Runner:
    """Trainers per (batch, shuffle) compiled once, plus the evaluator."""

    def __init__(self, objective: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> None:
        self.objective, self.x, self.y, self.key = objective, x, y, key
        self.n = int(x.shape[0])
        self._evaluate = make_evaluator(objective)
        self._trainers: dict[tuple[int, bool], Any] = {}

    def evaluate(self, states: TrainState) -> np.ndarray:
        """The full training loss of each stacked state, ``(L,)`` (non-finite -> inf)."""
        return np.asarray(self._evaluate(states.params, self.x, self.y))

    def train(self, states, batch, step0, n_steps, *, shuffle=True) -> TrainState:
        """``n_steps`` steps from global step ``step0`` (compiled once per batch size)."""
        if (batch, shuffle) not in self._trainers:
            self._trainers[batch, shuffle] = make_trainer(self.objective, self.n, batch, shuffle)
        run = self._trainers[batch, shuffle]
        return run(states, step0, n_steps, self.key, self.x, self.y)

    def sweep(self, params0, batch, lrs, momentum, epochs) -> np.ndarray:
        """Final training loss of each learning rate after ``epochs`` epochs (vmapped)."""
        states = init_states(params0, lrs, momentum)
        states = self.train(states, batch, 0, epochs * (self.n // batch))
        return self.evaluate(states)

    def curve(
        self,
        params0,
        batch,
        lr,
        momentum,
        epochs,
        *,
        shuffle=True,
        evals_per_epoch=4,
        on_eval=None,
    ) -> dict[str, list[float]]:
        """One run, evaluated ``evals_per_epoch`` times an epoch; times only training.

        ``on_eval(epoch, params, loss)`` is called after each evaluation (not timed).
        """
        states = init_states(params0, [lr], momentum)
        jax.block_until_ready(self.train(states, batch, 0, 0, shuffle=shuffle))  # compile
        spe = self.n // batch
        seg = max(1, spe // evals_per_epoch)
        out = {"step": [0], "epoch": [0.0], "examples": [0], "seconds": [0.0]}
        out["loss"] = [float(self.evaluate(states)[0])]
        if on_eval is not None:
            on_eval(0.0, states.params, out["loss"][0])
        step, elapsed = 0, 0.0
        while step < epochs * spe:
            n_steps = min(seg, epochs * spe - step)
            t = records.Timer()
            states = jax.block_until_ready(
                self.train(states, batch, step, n_steps, shuffle=shuffle)
            )
            elapsed += t()
            step += n_steps
            out["step"].append(step)
            out["epoch"].append(step / spe)
            out["examples"].append(step * batch)
            out["seconds"].append(elapsed)
            out["loss"].append(float(self.evaluate(states)[0]))
            if on_eval is not None:
                on_eval(step / spe, states.params, out["loss"][-1])
        out["final_params"] = jax.tree.map(lambda a: a[0], states.params)
        return out

    def steps_to_target(self, params0, batch, lrs, target, max_steps, ratio) -> dict:
        """First evaluated step at which any learning rate reaches ``target`` (vmapped)."""
        states = init_states(params0, lrs, 0.0)
        step, first = 0, float(self.evaluate(states)[0])
        losses = np.asarray([])
        while step < max_steps:
            nxt = min(max_steps, max(step + 1, math.ceil(step * ratio)))
            states = self.train(states, batch, step, nxt - step)
            step = nxt
            losses = self.evaluate(states)
            if np.any(losses <= target):
                best = int(np.argmin(losses))
                return {
                    "batch": batch,
                    "steps": step,
                    "best_lr": float(lrs[best]),
                    "lrs": list(map(float, lrs)),
                    "losses": losses.tolist(),
                }
            if np.all(~np.isfinite(losses) | (losses > 3 * first)):
                break
        return {
            "batch": batch,
            "steps": None,
            "best_lr": None,
            "lrs": list(map(float, lrs)),
            "losses": losses.tolist(),
        }


# --------------------------------------------------------------------------- part 1


def gram_matrix(loss_fn: Any, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """``K_ij = <g_i, g_j>`` for an MLP by the dense trick (no per-example gradient)."""
    acts, deltas = jax.jit(lambda p: dense_trick.factors(loss_fn, p, x, y))(params)
    k = None
    for name, d in deltas.items():
        a = acts[name]
        term = (a @ a.T + 1.0) * (d @ d.T)
        k = term if k is None else k + term
    return k


def measured_variance(k: jax.Array, batch: int, sampling: str, samples: int, key) -> np.ndarray:
    """``|g_hat - G|^2`` of ``samples`` sampled mini-batch gradients, computed exactly from
    the Gram matrix ``K``: with ``c`` the batch's weights minus ``1/N`` (``g_hat - G =
    sum_i c_i g_i``), ``|g_hat - G|^2 = c^T K c``. Small batches gather ``K_SS``
    (``w^T K_SS w - 2 w . (K 1/N)_S + 1^T K 1/N^2``); large ones use dense ``c``."""
    n = k.shape[0]
    row = jnp.sum(k, axis=1) / n  # <g_i, G>
    g2 = jnp.sum(row) / n  # |G|^2
    keys = jax.random.split(key, samples)

    def draw(key):
        return pe.sample_batch(key, n, batch, sampling)  # type: ignore[arg-type]

    if batch <= 256:

        @jax.jit
        def gathered(keys):
            def one(key):
                idx, w = draw(key)
                return w @ (k[idx][:, idx] @ w) - 2.0 * (w @ row[idx]) + g2

            return jax.vmap(one)(keys)

        return np.asarray(gathered(keys))

    @jax.jit
    def dense(keys):
        def weights(key):
            idx, w = draw(key)
            return jnp.zeros((n,), k.dtype).at[idx].add(w.astype(k.dtype)) - 1.0 / n

        c = jax.vmap(weights)(keys)  # (R, N)
        return jnp.sum((c @ k) * c, axis=1)

    return np.asarray(dense(keys))


# --------------------------------------------------------------------------- analysis


def critical_batch(batches: Sequence[int], steps: Sequence[int]) -> dict[str, Any]:
    """``S_min``, ``E_min``, ``B_crit = E_min / S_min`` and each batch size's regime.

    McCandlish et al.: ``S = S_min (1 + B_crit / B)``, ``E = E_min (1 + B / B_crit)``.
    Also fits ``S_min, B_crit`` of that curve by least squares on ``log S``.
    """
    b = np.asarray(batches, float)
    s = np.asarray(steps, float)
    s_min, e_min = float(s.min()), float((s * b).min())
    grid = np.geomspace(b.min() / 4, b.max() * 4, 400)
    best = (np.inf, 0.0, 0.0)
    for bc in grid:
        shape = np.log1p(bc / b)
        log_smin = float(np.mean(np.log(s) - shape))
        err = float(np.sum((np.log(s) - log_smin - shape) ** 2))
        if err < best[0]:
            best = (err, float(np.exp(log_smin)), float(bc))
    regimes = []
    for bi, si in zip(b, s, strict=True):
        if si * bi <= 1.5 * e_min:
            regimes.append("perfect scaling")
        elif si <= 1.5 * s_min:
            regimes.append("no gain")
        else:
            regimes.append("diminishing returns")
    return {
        "s_min": s_min,
        "e_min": e_min,
        "b_crit_emin_over_smin": e_min / s_min,
        "fit_s_min": best[1],
        "fit_b_crit": best[2],
        "regimes": dict(zip(map(int, b), regimes, strict=True)),
    }


def noise_summary(tracked: list[dict[str, Any]]) -> dict[str, float]:
    """Noise scales at the start, where the target loss is first reached, their geometric
    mean ("to_target": the stretch of training the steps-to-target runs cover), and the
    mean over every epoch of the run."""
    out: dict[str, float] = {}
    at = [t for t in tracked if t["at_target"]]
    for name in ("b_simple", "b_noise"):
        values = np.asarray([t[name] for t in tracked], float)
        start = float(values[0])
        hit = float(at[0][name]) if at else float("nan")
        out[f"{name}_start"] = start
        out[f"{name}_at_target"] = hit
        out[f"{name}_to_target"] = (
            float(np.sqrt(start * hit)) if start > 0 and hit > 0 else float("nan")
        )
        out[f"{name}_mean"] = float(np.nanmean(values))
    out["target_reached_at_epoch"] = float(at[0]["epoch"]) if at else float("nan")
    return out


def _verdict(simple_ratio: float, noise_ratio: float) -> str:
    """Say plainly how far each noise scale (mean over training) is from B_crit."""

    def one(name: str, r: float) -> str:
        if not np.isfinite(r) or r <= 0:
            return f"{name} could not be estimated reliably"
        close = "within a factor 2 of" if 0.5 <= r <= 2 else f"a factor {max(r, 1 / r):.1f} off"
        side = "above" if r > 1 else "below"
        return f"{name} is {close} the measured critical batch size ({side} it)"

    good = [0.5 <= r <= 2 for r in (simple_ratio, noise_ratio) if np.isfinite(r) and r > 0]
    summary = (
        "the noise scale predicts the critical batch size to within a factor 2"
        if any(good)
        else "neither noise scale predicts the critical batch size to within a factor 2"
    )
    return f"{one('B_simple', simple_ratio)}; {one('B_noise', noise_ratio)}: {summary}."


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    run = cli.start(NAME, __doc__ or NAME, argv)
    args = run.args
    quick = run.quick
    x_np, y_np, _, mnist = load_data(run, make_config(quick, True))
    cfg = make_config(quick, mnist)
    cfg["n_train"] = n = len(y_np)
    n_classes = int(y_np.max()) + 1
    key = jax.random.key(args.seed)
    model = models.mlp([cfg["hidden"]], n_classes, "tanh")
    _, params0 = model.init(jax.random.fold_in(key, 0), (-1, x_np.shape[1]))
    loss_fn = pe.model_loss(model, softmax_cross_entropy)  # per-example statistics
    objective = supervised(model, softmax_cross_entropy)  # training
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    runner = Runner(objective, x, y, jax.random.fold_in(key, 1))
    lr_grid = [2.0**e for e in cfg["lr_grid_exponents"]]
    mid, full_b, epochs = cfg["mid_batch"], n, cfg["epochs"]
    regimes = {"sgd": 1, "minibatch": mid, "full_batch": full_b}
    base = cfg["batch_base"]
    batches = sorted({base**k for k in range(int(math.log(n, base) + 1e-9) + 1)} | {n})
    out = args.out
    metrics: dict[str, Any] = {}
    figures: list[str] = []
    bar = tqdm(total=len(regimes) + len(batches) + 5, desc=NAME, unit="part")

    # 2 (and 4's vanilla half): fixed epoch budget, best learning rate per regime.
    best_lr, curves = {}, {}
    for name, b in regimes.items():
        finals = runner.sweep(params0, b, lr_grid, 0.0, epochs)
        best_lr[name] = lr_grid[int(np.argmin(finals))]
        metrics.setdefault("lr_sweep", {})[name] = dict(
            zip(map(str, lr_grid), finals.tolist(), strict=True)
        )
        bar.update()
    tracked: list[dict[str, Any]] = []

    def track(epoch, p, loss):  # 5: noise scales each epoch and where the target is first hit
        at_target = loss <= cfg["target_loss"] and not any(t["at_target"] for t in tracked)
        if epoch != int(epoch) and not at_target:
            return
        s = pe.stats(
            loss_fn,
            jax.tree.map(lambda a: a[0], p),
            x,
            y,
            hessian_examples=cfg["hessian_examples"],
            hessian_batch=cfg["hessian_batch"],
            hessian_key=jax.random.fold_in(key, 100 + int(4 * epoch)),
        )
        tracked.append({"epoch": epoch, "loss": loss, "at_target": at_target, **s.summary()})

    for name, b in regimes.items():
        curves[name] = runner.curve(
            params0, b, best_lr[name], 0.0, epochs, on_eval=track if name == "minibatch" else None
        )
    bar.update()

    # 4: momentum 0.9 at the mini-batch size, its own best learning rate.
    mom_grid = [lr / 8 for lr in lr_grid]
    finals = runner.sweep(params0, mid, mom_grid, cfg["momentum"], epochs)
    best_lr["momentum"] = mom_grid[int(np.argmin(finals))]
    curves["momentum"] = runner.curve(params0, mid, best_lr["momentum"], cfg["momentum"], epochs)
    bar.update()

    # 1: variance vs batch size at the trained mini-batch params, measured vs predicted.
    trained = curves["minibatch"]["final_params"]
    st = pe.stats(loss_fn, trained, x, y)
    k = gram_matrix(loss_fn, trained, x, y)
    variance = {"batch": batches, "with_replacement": {}, "without_replacement": {}}
    for sampling in ("with_replacement", "without_replacement"):
        meas, se, pred = [], [], []
        for i, b in enumerate(batches):
            r = cfg["mc_samples"] * max(1, min(16, 256 // b))  # more samples for small B
            v = measured_variance(k, b, sampling, r, jax.random.fold_in(key, i))
            meas.append(float(v.mean()))
            se.append(float(v.std() / math.sqrt(len(v))))
            pred.append(float(st.minibatch_variance(b, sampling)))  # type: ignore[arg-type]
        variance[sampling] = {"measured": meas, "standard_error": se, "predicted": pred}
    variance["trace_cov"] = float(st.trace_cov)
    variance["grad_sq_norm"] = float(st.grad_sq_norm)
    variance["grad_sq_norm_from_gram"] = float(jnp.sum(k) / n**2)
    metrics["variance_vs_batch"] = variance
    bar.update()

    # 6 and 3: steps to the target loss vs batch size, tuned learning rate per batch size.
    scaling, lo = [], 0
    for b in batches:
        lrs = lr_grid[lo : lo + cfg["sweep_lrs_per_batch"]]
        max_steps = int(min(100_000, 20 * n / b + 2000 * (not quick) + 200 * quick))
        r = runner.steps_to_target(
            params0, b, lrs, cfg["target_loss"], max_steps, cfg["eval_ratio"]
        )
        scaling.append(r)
        if r["best_lr"] is not None:  # the best learning rate grows with B: shift the grid
            lo = max(lo, lr_grid.index(r["best_lr"]) - 1)
            lo = min(lo, len(lr_grid) - cfg["sweep_lrs_per_batch"])
        bar.update()
    reached = [r for r in scaling if r["steps"] is not None]
    crit = (
        critical_batch([r["batch"] for r in reached], [r["steps"] for r in reached])
        if len(reached) >= 2
        else {}
    )
    noise = noise_summary(tracked)
    if crit:
        bc = crit["b_crit_emin_over_smin"]
        ref = "to_target" if np.isfinite(noise["b_simple_to_target"]) else "mean"
        simple, hess = noise[f"b_simple_{ref}"] / bc, noise[f"b_noise_{ref}"] / bc
        crit["noise_scale_vs_critical"] = {
            **noise,
            "compared": f"b_*_{ref}",
            "b_simple_over_b_crit": simple,
            "b_noise_over_b_crit": hess,
            "verdict": _verdict(simple, hess),
        }
    metrics["steps_to_target"] = {"target_loss": cfg["target_loss"], "runs": scaling, **crit}
    metrics["best_lr_vs_batch"] = {str(r["batch"]): r["best_lr"] for r in scaling}
    bar.update()

    # 7: class-sorted data, no shuffling, the mini-batch learning rate.
    order = np.argsort(y_np, kind="stable")
    sorted_runner = Runner(objective, x[order], y[order], runner.key)
    curves["sorted_no_shuffle"] = sorted_runner.curve(
        params0, mid, best_lr["minibatch"], 0.0, epochs, shuffle=False
    )
    bar.update()
    bar.close()

    for c in curves.values():
        c.pop("final_params", None)
    metrics["best_lr"] = best_lr
    metrics["curves"] = curves
    metrics["noise_scales_over_training"] = tracked
    metrics["final_loss"] = {name: c["loss"][-1] for name, c in curves.items()}
    metrics["train_seconds"] = {name: c["seconds"][-1] for name, c in curves.items()}
    figures += plot_all(out, cfg, metrics, regimes, mnist)
    headline = [
        f"final train loss after {epochs} epochs: "
        + ", ".join(f"{k} {metrics['final_loss'][k]:.3f}" for k in [*regimes, "momentum"]),
        f"class-sorted without shuffling: {metrics['final_loss']['sorted_no_shuffle']:.3f} "
        f"(shuffled: {metrics['final_loss']['minibatch']:.3f})",
    ]
    if crit:
        nz = crit["noise_scale_vs_critical"]
        ref = nz["compared"].removeprefix("b_*_")
        where = "from the start to the target loss" if ref == "to_target" else "mean over training"
        headline.append(
            f"critical batch E_min/S_min = {crit['b_crit_emin_over_smin']:.0f}; "
            f"B_simple {nz[f'b_simple_{ref}']:.0f}, B_noise {nz[f'b_noise_{ref}']:.0f} ({where})"
        )
    return run.write(cfg, metrics, headline=headline, figures=figures)


# --------------------------------------------------------------------------- plots


@dataclasses.dataclass
class Panel:
    """One set of axes: lines ``(x, y, style, label)``, vertical markers, labels, scales.

    ``vlines``: ``(x, color, linestyle, label)``. Points that a log axis cannot show
    (``<= 0`` or not finite) are left out of each line.
    """

    lines: list[tuple[Any, Any, str, str]]
    xlabel: str
    ylabel: str
    title: str = ""
    xscale: str = "linear"
    yscale: str = "linear"
    vlines: list[tuple[float, str, str, str]] = dataclasses.field(default_factory=list)
    legend: float | None = 8.0  # legend font size; None: no legend


def _draw(ax: Any, panel: Panel) -> None:
    for xs, ys, style, label in panel.lines:
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if panel.xscale == "log":
            ok &= xs > 0
        if panel.yscale == "log":
            ok &= ys > 0
        ax.plot(xs[ok], ys[ok], style, label=label, ms=4)
    for x, color, ls, label in panel.vlines:
        ax.axvline(x, color=color, ls=ls, label=label)
    ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel, title=panel.title)
    ax.set(xscale=panel.xscale, yscale=panel.yscale)
    if panel.legend is not None:
        ax.legend(fontsize=panel.legend)


def save_panels(out: str, filename: str, panels: Sequence[Panel], title: str = "") -> str:
    """Draw ``panels`` side by side (constrained layout: labels never overlap the
    neighbouring panel's ticks) and save them as ``filename`` in ``out``."""
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.2), layout="constrained", squeeze=False
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw(ax, panel)
    if title:
        fig.suptitle(title)
    return plotting.save_figure(fig, out, filename)


def plot_all(out: str, cfg: dict, m: dict, regimes: dict, mnist: bool) -> list[str]:
    """The seven figures; returns their file names."""
    data = "MNIST" if mnist else "spiral"
    mid = f"B={cfg['mid_batch']}"
    curves, best = m["curves"], m["best_lr"]

    def loss_vs_epoch(names_labels, title):
        lines = [(curves[k]["epoch"], curves[k]["loss"], "-", lab) for k, lab in names_labels]
        return Panel(lines, "epoch", "training loss", title, yscale="log")

    v = m["variance_vs_batch"]
    floor = 1e-6 * max(max(v[s]["measured"]) for s in ("with_replacement", "without_replacement"))

    def shown(values):  # a rounding-error "zero" (B = N without replacement) is not drawn
        return [x if x > floor else np.nan for x in values]

    variance = Panel(
        [
            line
            for sampling, color in (("with_replacement", "C0"), ("without_replacement", "C1"))
            for line in (
                (
                    v["batch"],
                    shown(v[sampling]["predicted"]),
                    f"-{color}",
                    f"predicted, {sampling}",
                ),
                (v["batch"], shown(v[sampling]["measured"]), f"o{color}", f"measured, {sampling}"),
            )
        ],
        "batch size B",
        "E|g_B - G|^2",
        f"Mini-batch gradient variance ({data})\nwithout replacement it is 0 at B=N (not drawn)",
        xscale="log",
        yscale="log",
        legend=7,
    )

    regime_panels = []
    for key, xlabel in (
        ("epoch", "epochs"),
        ("examples", "gradient evaluations (examples)"),
        ("seconds", "wall-clock (s)"),
    ):
        start = {"epoch": 0.0, "examples": 1.0, "seconds": 1e-4}[key]  # step 0 on a log axis
        lines = [
            (
                np.maximum(curves[k][key], start),
                curves[k]["loss"],
                "-",
                f"{k} (B={b}, lr={best[k]:g})",
            )
            for k, b in regimes.items()
        ]
        scale = "linear" if key == "epoch" else "log"
        regime_panels.append(
            Panel(lines, xlabel, "training loss", xscale=scale, yscale="log", legend=None)
        )
    regime_panels[0].legend = 7

    runs = [r for r in m["steps_to_target"]["runs"] if r["steps"] is not None]
    batches = np.asarray([r["batch"] for r in runs], float)
    best_lr = Panel(
        [(batches, [r["best_lr"] for r in runs], "o-", "best learning rate")],
        "batch size B",
        "best learning rate",
        f"Best learning rate vs batch size ({data})",
        xscale="log",
        yscale="log",
        legend=None,
    )

    t = m["noise_scales_over_training"]
    epochs = [r["epoch"] for r in t]
    noise = Panel(
        [
            (epochs, [r["b_simple"] for r in t], "o-", "B_simple"),
            (epochs, [max(r["b_noise"], 1e-3) for r in t], "s-", "B_noise (Hessian-aware)"),
        ],
        "epoch",
        "noise scale (examples)",
        f"Noise scales over training ({mid})",
        yscale="log",
    )

    st = m["steps_to_target"]
    steps = Panel(
        [(batches, [r["steps"] for r in runs], "o-", "measured (tuned lr)")],
        "batch size B",
        f"steps to training loss {st['target_loss']}",
        f"Steps to target vs batch size ({data})",
        xscale="log",
        yscale="log",
        legend=7,
    )
    if "s_min" in st:
        fit = st["fit_s_min"] * (1 + st["fit_b_crit"] / batches)
        steps.lines.append(
            (batches, fit, "--", f"fit S_min(1 + B_crit/B), B_crit={st['fit_b_crit']:.0f}")
        )
        bc = st["b_crit_emin_over_smin"]
        steps.vlines.append((bc, "k", ":", f"E_min/S_min = {bc:.0f}"))
        nz = st["noise_scale_vs_critical"]
        for name, color in (("b_simple", "C2"), ("b_noise", "C3")):
            value = nz[f"{name}_to_target"]
            if np.isfinite(value) and value > 0:
                label = f"{'B_simple' if name == 'b_simple' else 'B_noise'} (start to target)"
                steps.vlines.append((value, color, "-.", f"{label} = {value:.0f}"))

    figures = [
        ("variance_vs_batch.png", [variance], ""),
        ("regimes_loss.png", regime_panels, f"SGD vs mini-batch vs full batch ({data})"),
        ("best_lr_vs_batch.png", [best_lr], ""),
        (
            "momentum.png",
            [
                loss_vs_epoch(
                    [(k, f"{k} lr={best[k]:g}") for k in ("minibatch", "momentum")],
                    f"Vanilla SGD vs momentum {cfg['momentum']} ({mid})",
                )
            ],
            "",
        ),
        ("noise_scales.png", [noise], ""),
        ("steps_vs_batch.png", [steps], ""),
        (
            "sorted_control.png",
            [
                loss_vs_epoch(
                    [("minibatch", "shuffled"), ("sorted_no_shuffle", "class-sorted, no shuffle")],
                    f"Why sampling matters ({mid})",
                )
            ],
            "",
        ),
    ]
    return [save_panels(out, name, panels, title) for name, panels, title in figures]


if __name__ == "__main__":
    cli.main(main)
