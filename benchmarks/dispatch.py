"""Dispatch overhead and compile time: fnet's train step against a raw ``jax.jit`` step.

* Per-step time of a tiny MLP (8-8-2, batch 16), where the work is negligible and the
  time is Python + dispatch: 200 steps in a Python loop of ``fnet.train.train_step``
  (with and without donation) and of a hand-written ``jax.jit`` step doing the same
  optax update (also one that returns what fnet's step returns: a step counter and
  loss/accuracy metrics); and per step of a fused epoch (``fnet.fit`` vs a raw
  ``lax.scan``).
* Compile time (trace + lower + compile, fresh functions each time) of the training step
  of the MLP 784-200-10 and of the convnet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks.harness import ratio, time_interleaved

__all__ = ["run"]

STEPS = 200


def _tiny_data(n: int, d: int = 8, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, d), dtype=np.float32)
    y = rng.integers(0, 2, size=n, dtype=np.int32)
    return jax.device_put(x), jax.device_put(y)


def _setup(model: Any, input_shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
    import fnet
    from fnet.train import supervised

    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, *input_shape))
    return objective, params, optax.sgd(0.1)


def _raw_step(model: Any, opt: Any) -> Callable[..., Any]:
    """The hand-written step: model.apply + the same loss + optax, returns the loss."""
    import fnet

    def step(params, opt_state, x, y):
        def loss(p):
            return fnet.losses.softmax_cross_entropy(model.apply(p, x), y)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def _raw_step_like_fnet(model: Any, opt: Any) -> Callable[..., Any]:
    """The raw step doing fnet's extra work too: a step counter, loss/accuracy metrics."""
    import fnet

    def step(params, opt_state, count, x, y):
        def loss(p):
            scores = model.apply(p, x)
            return fnet.losses.softmax_cross_entropy(scores, y), scores

        (value, scores), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        acc = jnp.mean((jnp.argmax(scores, -1) == y).astype(jnp.float32))
        metrics = {"loss": value, "accuracy": acc, "objective": value}
        return optax.apply_updates(params, updates), opt_state, count + 1, metrics

    return step


def _loops(batch: int) -> dict[str, Callable[[], Any]]:
    import fnet
    from fnet.train import TrainState, train_step

    model = fnet.models.mlp([8], 2, "tanh")
    objective, params, opt = _setup(model, (8,))
    x, y = _tiny_data(batch)
    raw = jax.jit(_raw_step(model, opt))
    raw_donate = jax.jit(_raw_step(model, opt), donate_argnums=(0, 1))
    raw_like = jax.jit(_raw_step_like_fnet(model, opt))
    fnet_step = train_step(objective, opt)
    fnet_donate = train_step(objective, opt, donate=True)
    key = jax.random.key(0)
    box: dict[str, Any] = {}

    def raw_loop(step, name):
        def go():
            p, s = box.get(name, (params, opt.init(params)))
            p, s = jax.tree.map(jnp.copy, (p, s)) if name not in box else (p, s)
            for _ in range(STEPS):
                p, s, _ = step(p, s, x, y)
            box[name] = (p, s)
            return p

        return go

    def raw_like_loop():
        def go():
            p, s, c = box.get("like", (params, opt.init(params), jnp.zeros((), jnp.int32)))
            for _ in range(STEPS):
                p, s, c, _ = raw_like(p, s, c, x, y)
            box["like"] = (p, s, c)
            return p

        return go

    def fnet_loop(step, name):
        def go():
            ts = box.get(name) or jax.tree.map(jnp.copy, TrainState.create(params, opt))
            for _ in range(STEPS):
                ts, _ = step(ts, x, y, key)
            box[name] = ts
            return ts.params

        return go

    return {
        "raw jax.jit step": raw_loop(raw, "raw"),
        "raw jax.jit step (donate)": raw_loop(raw_donate, "raw_d"),
        "raw jax.jit step, fnet's outputs": raw_like_loop(),
        "fnet train_step": fnet_loop(fnet_step, "fnet"),
        "fnet train_step (donate)": fnet_loop(fnet_donate, "fnet_d"),
    }


def _fused(batch: int, epoch_times: list[float]) -> dict[str, Callable[[], Any]]:
    import fnet
    from fnet.train import fit

    model = fnet.models.mlp([8], 2, "tanh")
    objective, params, opt = _setup(model, (8,))
    x, y = _tiny_data(batch * STEPS)
    raw = _raw_step(model, opt)

    @partial(jax.jit, donate_argnums=(0, 1))
    def scan_epoch(p, s, key):
        perm = jax.random.permutation(key, x.shape[0])
        xs, ys = x[perm].reshape(STEPS, batch, -1), y[perm].reshape(STEPS, batch)

        def body(carry, b):
            p, s, _ = raw(*carry, *b)
            return (p, s), None

        return lax.scan(body, (p, s), (xs, ys))[0]

    box: dict[str, Any] = {"raw": (jax.tree.map(jnp.copy, params), opt.init(params))}

    def raw_go():
        box["raw"] = scan_epoch(*box["raw"], jax.random.key(1))
        return box["raw"]

    def fit_go():
        out = fit(objective, params, opt, x, y, key=jax.random.key(1), epochs=1,
                  batch_size=batch, progress=False)  # fmt: skip
        epoch_times.append(out.history["epoch_time"][0])
        return out.params

    return {"raw lax.scan epoch": raw_go, "fnet.fit epoch": fit_go}


def _compile_times(quick: bool) -> list[dict]:
    import fnet
    from fnet.train import TrainState, train_step

    rows = []
    models: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
        "mlp 784-200-10": (lambda: fnet.models.mlp([200], 10, "tanh"), (784,))
    }
    if not quick:
        models["convnet"] = (lambda: fnet.models.convnet(10), (28, 28, 1))
    for name, (make, shape) in models.items():
        times: dict[str, list[float]] = {"raw jax.jit": [], "fnet train_step": []}
        for _ in range(1 if quick else 3):
            model = make()
            objective, params, opt = _setup(model, shape)
            x = jnp.zeros((100, *shape), jnp.float32)
            y = jnp.zeros((100,), jnp.int32)
            t = time.perf_counter()
            jax.jit(_raw_step(model, opt)).lower(params, opt.init(params), x, y).compile()
            times["raw jax.jit"].append(time.perf_counter() - t)
            ts = TrainState.create(params, opt)
            t = time.perf_counter()
            step: Any = train_step(objective, opt)
            step.lower(ts, x, y, jax.random.key(0)).compile()
            times["fnet train_step"].append(time.perf_counter() - t)
        raw = float(np.median(times["raw jax.jit"]))
        for what, ts_ in times.items():
            med = float(np.median(ts_))
            rows.append(
                {
                    "measure": f"compile {name} step (B=100)",
                    "framework": what,
                    "value": med * 1e3,
                    "unit": "ms",
                    "x_raw_jit": ratio(med, raw),
                }
            )
    return rows


def run(quick: bool) -> list[dict]:
    """Rows: per-step times (us) with ratio to the raw step, then compile times (ms)."""
    batch = 16
    repeats = 3 if quick else 15
    rows: list[dict] = []
    epoch_times: list[float] = []
    for group, cases, ref in (
        ("step in a Python loop", _loops(batch), "raw jax.jit step"),
        ("step in a fused epoch", _fused(batch, epoch_times), "raw lax.scan epoch"),
    ):
        timings = time_interleaved(cases, repeats=repeats)
        base = timings[ref].median
        measure = f"tiny MLP 8-8-2 B={batch}, {group}"
        for name, t in timings.items():
            rows.append(
                {
                    "measure": measure,
                    "framework": name,
                    "value": t.median / STEPS * 1e6,
                    "unit": "us/step",
                    "spread": t.spread,
                    "x_raw_jit": t.median / base,
                }
            )
        if epoch_times[1:]:  # fit's own epoch timer: the compiled epoch without fit's setup
            med = float(np.median(epoch_times[1:]))
            rows.append(
                {
                    "measure": measure,
                    "framework": "fnet.fit epoch (history epoch_time)",
                    "value": med / STEPS * 1e6,
                    "unit": "us/step",
                    "x_raw_jit": med / base,
                }
            )
    return rows + _compile_times(quick)
