"""Training throughput: ``fnet.fit`` vs a hand-written jitted step in a Python loop and a
hand-written fused ``lax.scan`` epoch.

Models: the slides' MLP 784-200-tanh-10 and Linear 784-10, softmax cross-entropy, SGD
lr 0.1, on random MNIST-shaped data (60,000 x 784 float32, 10 classes), batch 100 and 1000.
Every method shuffles each epoch on the device and trains on the same initial params.
Two hand-written fused epochs are measured: the textbook one (gather the permuted data,
reshape to ``(steps, B, ...)``, scan) and a leaner one that scans over index rows and
gathers each batch inside the step, which is what ``fnet.fit`` does.
Compilation is timed separately (the first, warm-up call); then each method runs
``repeats`` timed calls of ``epochs`` epochs, interleaved round-robin so that load from
other processes hits all methods alike. Reported: samples/s (median, min, max) and the
ratio of medians to the hand-written loop.

Run: ``python -m benchmarks.train_throughput [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import fnet
from fnet.losses import softmax_cross_entropy
from fnet.train import fit, supervised

LR = 0.1
N_CLASSES = 10


def _forward(params: dict, x: jax.Array, hidden: bool) -> jax.Array:
    """The same network as ``fnet.models.mlp([200], 10, "tanh")`` / ``linear(10)``."""
    if hidden:
        x = jnp.tanh(x @ params["dense_0"]["w"] + params["dense_0"]["b"])
        return x @ params["dense_1"]["w"] + params["dense_1"]["b"]
    return x @ params["dense_0"]["w"] + params["dense_0"]["b"]


def _loss(params: dict, x: jax.Array, y: jax.Array, hidden: bool) -> jax.Array:
    logp = jax.nn.log_softmax(_forward(params, x, hidden))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _sgd(params: dict, x: jax.Array, y: jax.Array, hidden: bool) -> tuple[dict, jax.Array]:
    loss, g = jax.value_and_grad(_loss)(params, x, y, hidden)
    return jax.tree.map(lambda p, d: p - LR * d, params, g), loss


# --------------------------------------------------------------------- hand-written loop


@partial(jax.jit, static_argnames="batch_size")
def _shuffle(x, y, key, *, batch_size):
    """One dispatch per epoch: permuted data as ``(steps, B, ...)`` batches."""
    steps = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: steps * batch_size]
    return (
        x[perm].reshape(steps, batch_size, *x.shape[1:]),
        y[perm].reshape(steps, batch_size),
    )


@partial(jax.jit, static_argnames="hidden", donate_argnums=0)
def _loop_step(params, xs, ys, i, *, hidden):
    """One SGD step on batch ``i`` of the shuffled epoch (one dispatch per step)."""
    xb = lax.dynamic_index_in_dim(xs, i, keepdims=False)
    yb = lax.dynamic_index_in_dim(ys, i, keepdims=False)
    return _sgd(params, xb, yb, hidden)


def _run_loop(params, x, y, key, epochs, batch_size, hidden):
    loss = None
    for epoch in range(epochs):
        xs, ys = _shuffle(x, y, jax.random.fold_in(key, epoch), batch_size=batch_size)
        for i in range(xs.shape[0]):
            params, loss = _loop_step(params, xs, ys, i, hidden=hidden)
    jax.block_until_ready((params, loss))
    return params


# --------------------------------------------------------------------- hand-written scan


@partial(jax.jit, static_argnames=("batch_size", "hidden"), donate_argnums=0)
def _scan_epoch(params, x, y, key, *, batch_size, hidden):
    """The textbook fused epoch: permute, gather, reshape to (steps, B, ...), scan."""
    steps = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: steps * batch_size]
    xs = x[perm].reshape(steps, batch_size, *x.shape[1:])
    ys = y[perm].reshape(steps, batch_size)
    return lax.scan(lambda p, b: _sgd(p, b[0], b[1], hidden), params, (xs, ys))


@partial(jax.jit, static_argnames=("batch_size", "hidden"), donate_argnums=0)
def _scan_epoch_gather(params, x, y, key, *, batch_size, hidden):
    """A leaner fused epoch: scan over index rows, gather each batch inside the step."""
    steps = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: steps * batch_size]

    def body(p, idx):
        return _sgd(p, x[idx], y[idx], hidden)

    return lax.scan(body, params, perm.reshape(steps, batch_size))


def _scan_runner(epoch_fn):
    def run(params, x, y, key, epochs, batch_size, hidden):
        for epoch in range(epochs):
            params, losses = epoch_fn(
                params, x, y, jax.random.fold_in(key, epoch), batch_size=batch_size, hidden=hidden
            )
        jax.block_until_ready((params, losses))
        return params

    return run


# --------------------------------------------------------------------- fnet


def _fnet_runner(model) -> Callable[..., Any]:
    objective = supervised(model, softmax_cross_entropy)  # same objects: compiled once
    optimizer = optax.sgd(LR)

    def run(params, x, y, key, epochs, batch_size, hidden):
        del hidden
        result = fit(objective, params, optimizer, x, y, key=key, epochs=epochs,
                     batch_size=batch_size, progress=False)  # fmt: skip
        return result.params

    return run


def _copy(tree):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def _bench_config(
    name: str, hidden: bool, batch_size: int, x, y, epochs: int, repeats: int
) -> list[dict]:
    model = fnet.models.mlp([200], N_CLASSES, "tanh") if hidden else fnet.models.linear(N_CLASSES)
    _, params = model.init(jax.random.key(0), (-1, x.shape[1]))
    methods: dict[str, Callable[..., Any]] = {
        "jit step, Python loop": _run_loop,
        "fused scan (gather all, reshape)": _scan_runner(_scan_epoch),
        "fused scan (gather per step)": _scan_runner(_scan_epoch_gather),
        "fnet.fit": _fnet_runner(model),
    }
    key = jax.random.key(1)
    compile_s: dict[str, float] = {}
    for label, run in methods.items():  # warm-up: trace, compile, one epoch
        t = time.perf_counter()
        run(_copy(params), x, y, key, 1, batch_size, hidden)
        compile_s[label] = time.perf_counter() - t
    rates: dict[str, list[float]] = {label: [] for label in methods}
    cpu_us: dict[str, list[float]] = {label: [] for label in methods}
    labels = list(methods)
    samples = epochs * x.shape[0]
    for r in range(repeats):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            p = _copy(params)
            jax.block_until_ready(p)
            c, t = time.process_time(), time.perf_counter()
            methods[label](p, x, y, key, epochs, batch_size, hidden)
            rates[label].append(samples / (time.perf_counter() - t))
            cpu_us[label].append((time.process_time() - c) / samples * 1e6)
    base = statistics.median(rates[labels[0]])
    base_cpu = statistics.median(cpu_us[labels[0]])
    rows = []
    for label in labels:
        med, cpu = statistics.median(rates[label]), statistics.median(cpu_us[label])
        rows.append({
            "model": name, "batch": batch_size, "method": label,
            "samples_per_s": med, "min": min(rates[label]), "max": max(rates[label]),
            "vs_loop": med / base, "cpu_us_per_sample": cpu, "cpu_vs_loop": base_cpu / cpu,
            "warmup_s": compile_s[label], "repeats": repeats, "epochs": epochs,
            "n": x.shape[0],
        })  # fmt: skip
    return rows


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; one dict per (model, batch size, method).

    ``quick``: 10,000 examples and 2 repeats (seconds); otherwise 60,000 and 7 repeats of
    one epoch each (a few minutes on a busy 2-core CPU).

    Keys: ``model``, ``batch``, ``method``, ``samples_per_s`` (median wall-clock rate),
    ``min``, ``max``, ``vs_loop`` (median / the hand-written loop's median),
    ``cpu_us_per_sample`` (median process CPU time per sample: steadier than wall time
    on a shared machine), ``cpu_vs_loop`` (the loop's CPU time / this one's: > 1 is
    cheaper), ``warmup_s`` (first call: trace + compile + one epoch), ``repeats``,
    ``epochs``, ``n``.
    """
    n, repeats, epochs = (10_000, 2, 1) if quick else (60_000, 7, 1)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random((n, 784), dtype=np.float32))
    y = jax.device_put(rng.integers(0, N_CLASSES, n).astype(np.int32))
    rows = []
    for name, hidden in (("MLP 784-200-tanh-10", True), ("Linear 784-10", False)):
        for batch_size in (100, 1000):
            rows += _bench_config(name, hidden, batch_size, x, y, epochs, repeats)
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| model | batch | method | samples/s (median) | min – max | vs loop | "
        "CPU µs/sample | CPU vs loop | warm-up s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['method']} | {r['samples_per_s']:,.0f} | "
            f"{r['min']:,.0f} – {r['max']:,.0f} | {r['vs_loop']:.2f}x | "
            f"{r['cpu_us_per_sample']:.2f} | {r['cpu_vs_loop']:.2f}x | {r['warmup_s']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, 2 repeats")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0]}")
    print(markdown(run(quick=args.quick)))
