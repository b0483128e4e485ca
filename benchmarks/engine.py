"""The training engine's targets (issue 10) in one short run: ratios measured side by side.

* ``fixed cost``: a tiny MLP (8-8-2, 64 examples, one step per epoch), ``fit(epochs=1)``
  called again and again: its wall time minus ``history["epoch_time"]`` is what one
  ``fit`` call costs on top of its epoch (checks, cache look-ups, placement, history).
* ``mlp``/``linear``: MLP 784-200-tanh-10 at B=100 and 1000 and Linear 784-10 at B=100,
  ``fit`` called once per epoch (how sweeps and notebooks call it), against the
  hand-written ``lax.scan`` epoch, Flax, Equinox, Haiku, a ``jax.jit`` step loop and
  hand-written NumPy (``benchmarks.peers``).
* ``convnet``: ``fnet.models.convnet(10)`` at B=100, ``fit`` with the default driver
  (``steps_per_call="auto"``: the rolled epoch, since fnet's convolutions are canonical),
  with one straight-line step per call (``1``), with chunks of 4 unrolled steps
  (``4``), the same net with BatchNorm and Dropout, and the hand-written scan epoch
  (``benchmarks.convnet``: JAX's own, non-canonical conv gradients inside the loop);
  PyTorch eager when installed.

``python -m benchmarks --only engine`` (``--quick``: tiny sizes). Smaller N than the
``training``/``convnet`` benchmarks so that the whole run stays within a few minutes on
2 loaded cores; compare ratios within one workload only.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import numpy as np
import optax

from benchmarks import convnet as convnet_bench
from benchmarks.baselines import numpy_epoch
from benchmarks.harness import optional_import, ratio, time_interleaved
from benchmarks.peers import FACTORIES, OPTIONAL
from benchmarks.workloads import MODELS, mnist_like

__all__ = ["run"]

LR = 0.1
SCAN = "jax.lax.scan epoch"


def _fixed_cost(calls: int) -> dict:
    import fnet
    from fnet.train import fit, supervised

    model = fnet.models.mlp([8], 2)
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, 8))
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random((64, 8), dtype=np.float32))
    y = jax.device_put(rng.integers(0, 2, 64).astype(np.int32))
    opt = optax.sgd(0.1)
    extra, compile_s = [], []
    for i in range(calls + 1):
        t = time.perf_counter()
        res = fit(objective, params, opt, x, y, key=jax.random.key(i), epochs=1,
                  batch_size=64, progress=False)  # fmt: skip
        wall = time.perf_counter() - t
        params = res.params
        compile_s.append(res.history["compile_time"])
        if i:  # the first call compiles
            extra.append(wall - res.history["epoch_time"][0])
    return {
        "workload": "fixed cost per fit call (MLP 8-8-2, N=64, 1 step)",
        "framework": "fnet.fit",
        "ms_per_call": 1e3 * statistics.median(extra),
        "spread": (max(extra) - min(extra)) / statistics.median(extra),
        "compile_s": compile_s[0],
        "note": f"wall - epoch_time, median of {calls}; 2nd call compile_time "
        f"{1e3 * compile_s[1]:.2f} ms",
    }


def _fit_epoch(model: Any, x, y, batch: int, opt, *, accuracy: bool = True, **kw) -> Any:
    """One ``fit(epochs=1)`` call per epoch, as sweeps and notebooks call it."""
    import fnet
    from fnet.train import fit, supervised

    objective = supervised(model, fnet.losses.softmax_cross_entropy, accuracy=accuracy)
    init = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    xd, yd = jax.device_put(x), jax.device_put(y)
    box: dict[str, Any] = {"params": init[1], "state": init[2] if len(init) == 3 else None,
                           "epoch": 0}  # fmt: skip

    def epoch():
        box["epoch"] += 1
        res = fit(objective, box["params"], opt, xd, yd, state=box["state"],
                  key=jax.random.key(box["epoch"]), epochs=1, batch_size=batch,
                  progress=False, remainder="drop", **kw)  # fmt: skip
        box["params"], box["state"] = res.params, res.state
        return res.params

    return epoch


def _dense_rows(quick: bool, n: int | None = None) -> list[dict]:
    import fnet

    n = n or (1_000 if quick else 12_000)
    repeats = 1 if quick else 3
    x, y = mnist_like(n)
    rows = []
    for model_name, batch in (("mlp", 100), ("mlp", 1000), ("linear", 100)):
        if quick and batch == 1000:
            continue
        spec = MODELS[model_name]
        cases: dict[str, Any] = {}
        for name, factory in FACTORIES.items():
            if name in OPTIONAL:
                module, _ = optional_import(OPTIONAL[name])
                if module is None:
                    continue
            cases[name] = factory(spec, x, y, batch, LR)
        cases["NumPy (hand-written)"] = numpy_epoch(spec, x, y, batch, LR)
        if model_name == "mlp":  # the same fit with training accuracy off
            model = fnet.models.mlp(list(spec.sizes[1:-1]), spec.sizes[-1], "tanh")
            cases["fnet.fit (no train accuracy)"] = _fit_epoch(
                model, x, y, batch, optax.sgd(LR), accuracy=False
            )
        timings = time_interleaved(cases, repeats=repeats)
        examples = (n // batch) * batch
        rate = {k: examples / t.median for k, t in timings.items()}
        for k, r in sorted(rate.items(), key=lambda kv: -kv[1]):
            rows.append({
                "workload": f"{model_name} B={batch} N={n}, fit once per epoch",
                "framework": k,
                "samples_per_s": r,
                "spread": timings[k].spread,
                "x_scan": ratio(r, rate.get(SCAN)),
                "x_fit": ratio(r, rate.get("fnet.fit")),
                "compile_s": timings[k].compile_s,
            })  # fmt: skip
    return rows


def _compile_cpu_s(model: Any, x, y, batch: int, opt, steps_per_call) -> float:
    """Process CPU seconds to trace, lower and compile one fit's epoch from scratch.

    CPU time, not wall time: on a machine shared with other jobs the wall time of a
    compile stretches with the load, its CPU time much less (XLA compiles mostly on one
    thread, so this is close to the compile's wall time on a quiet machine).
    """
    import fnet
    from fnet.train import batch_plan, engine, supervised
    from fnet.train.step import TrainState

    jax.clear_caches()
    engine._compiled.cache_clear()
    engine._step_info.cache_clear()
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    init = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    ts = TrainState.create(init[1], opt, state=init[2] if len(init) == 3 else None)
    ts, xd, yd, key = jax.device_put((ts, x, y, jax.random.key(0)))
    plan = batch_plan(x.shape[0], batch, "drop", merge_single=bool(jax.tree.leaves(ts.state)))
    eng = engine.EpochEngine(objective, opt, plan, steps_per_call=steps_per_call)
    t = time.process_time()
    eng.compile(ts, xd, yd, key)
    return time.process_time() - t


def _conv_rows(quick: bool, n: int | None = None, repeats: int = 3) -> list[dict]:
    import fnet
    from fnet.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu

    if quick:
        n, hw, batch, channels, hidden, repeats = n or 64, 12, 32, (4, 8), 16, 1
    else:
        n, hw, batch, channels, hidden = n or 500, 28, 100, (32, 64), 128
    x, y = convnet_bench._data(n, hw)
    model = fnet.models.convnet(10, channels=channels, hidden=hidden)
    bn_model = fnet.serial(
        Conv2D(channels[0], 3), BatchNorm(), Relu(), MaxPool(2),
        Conv2D(channels[1], 3), BatchNorm(), Relu(), MaxPool(2),
        Flatten(), Dense(hidden), Relu(), Dropout(0.5), Dense(10),
    )  # fmt: skip
    opt = optax.sgd(0.01)
    cases: dict[str, Any] = {
        "fnet.fit (default: auto = rolled epoch)": _fit_epoch(model, x, y, batch, opt),
        "fnet.fit (steps_per_call=1)": _fit_epoch(model, x, y, batch, opt, steps_per_call=1),
        "fnet.fit (steps_per_call=4, unrolled)": _fit_epoch(
            model, x, y, batch, opt, steps_per_call=4
        ),
        "fnet.fit BatchNorm+Dropout (default)": _fit_epoch(bn_model, x, y, batch, opt),
        "jax.lax.scan epoch (hand-written)": convnet_bench._jax_case(x, y, batch, channels, hidden),
    }
    torch, _ = optional_import("torch")
    if torch is not None:
        cases["PyTorch eager"] = convnet_bench._torch_case(torch, x, y, batch, channels, hidden)
        cases["PyTorch eager BatchNorm+Dropout"] = convnet_bench._torch_case(
            torch, x, y, batch, channels, hidden, bn_dropout=True
        )
    timings = time_interleaved(cases, repeats=repeats)
    examples = (n // batch) * batch
    rate = {k: examples / t.median for k, t in timings.items()}
    ref = "PyTorch eager" if "PyTorch eager" in rate else "jax.lax.scan epoch (hand-written)"
    cpu = {
        "fnet.fit (default: auto = rolled epoch)": _compile_cpu_s(model, x, y, batch, opt, "auto"),
        "fnet.fit (steps_per_call=1)": _compile_cpu_s(model, x, y, batch, opt, 1),
        "fnet.fit (steps_per_call=4, unrolled)": _compile_cpu_s(model, x, y, batch, opt, 4),
        "fnet.fit BatchNorm+Dropout (default)": _compile_cpu_s(bn_model, x, y, batch, opt, "auto"),
    }
    return [
        {
            "workload": f"convnet {hw}x{hw}x1 ch={channels} B={batch} N={n}",
            "framework": k,
            "samples_per_s": r,
            "spread": timings[k].spread,
            f"x_{ref.split()[0].lower().replace('.', '_')}": ratio(r, rate[ref]),
            "compile_s": timings[k].compile_s,
            "compile_cpu_s": cpu.get(k),
            # Each net against PyTorch eager on the same net (BatchNorm+Dropout rows too).
            "x_pytorch_same_net": ratio(r, rate.get(_torch_peer(k))),
        }
        for k, r in sorted(rate.items(), key=lambda kv: -kv[1])
    ]


def _torch_peer(case: str) -> str:
    """PyTorch eager on the same net as ``case``."""
    return "PyTorch eager BatchNorm+Dropout" if "BatchNorm" in case else "PyTorch eager"


def run(quick: bool) -> list[dict]:
    """Rows: the fixed cost per call, then the dense and the convnet workloads."""
    rows = [_fixed_cost(5 if quick else 30)]
    rows += _conv_rows(quick)
    rows += _dense_rows(quick)
    return rows
