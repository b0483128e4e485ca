"""Benchmark: the cost of per-example gradients relative to the batch gradient.

MLP 784-200-tanh-10 (float32), softmax cross-entropy, batch sizes 32, 128 and 512.
Columns (median wall time over repeats after one warm-up call, as a ratio to one
jitted batch gradient of the same batch):

* ``grads``: materialised per-example gradients (``jax.vmap(jax.grad)``, one jit).
* ``norms_vmap``: per-example norms on the vmap path (one chunk = the whole batch).
* ``norms_dense``: per-example norms by the dense-layer trick.
* ``stats_60k``: ``per_example.stats`` over 60,000 examples (dense trick, chunks of the
  batch size), relative to the 60,000-example gradient computed the same way (a
  ``lax.scan`` of batch gradients over the same chunks).

Run ``python -m benchmarks.per_example [--quick]``; ``run(quick)`` returns the rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

import fnet
from fnet import per_example as pe
from fnet.chunking import slice_rows
from fnet.losses import softmax_cross_entropy

BATCH_SIZES = (32, 128, 512)


def _time(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn()`` (blocked until ready) after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _setup(n: int):
    model = fnet.models.mlp([200], 10, "tanh")
    _, params = model.init(jax.random.key(0), (-1, 784))
    x = jax.random.normal(jax.random.key(1), (n, 784), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (n,), 0, 10, jnp.int32)
    return pe.model_loss(model, softmax_cross_entropy), params, x, y


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Time each operation at batch 32, 128, 512; returns one dict per batch size."""
    repeats = 5 if quick else 20
    n_stats = 6_000 if quick else 60_000
    loss_fn, params, x_all, y_all = _setup(n_stats)
    batch_grad = jax.jit(jax.grad(loss_fn))
    rows = []
    for b in BATCH_SIZES:
        x, y = x_all[:b], y_all[:b]
        t_grad = _time(lambda x=x, y=y: batch_grad(params, x, y), repeats)
        t_grads = _time(lambda x=x, y=y: pe.grads(loss_fn, params, x, y), repeats)
        t_vmap = _time(
            lambda x=x, y=y, b=b: pe.norms(loss_fn, params, x, y, method="vmap", chunk_size=b),
            repeats,
        )
        t_dense = _time(lambda x=x, y=y: pe.norms(loss_fn, params, x, y, method="dense"), repeats)

        @jax.jit
        def full_grad(p, x, y, b=b):
            # The same chunks as stats: full chunks sliced in place, then the exact tail.
            steps = x.shape[0] // b

            def chunk_grad(x, y):
                def chunk_loss(p):
                    logits = loss_fn.model.apply(p, x)
                    return jnp.sum(softmax_cross_entropy(logits, y, reduction="none"))

                return jax.grad(chunk_loss)(p)

            def body(acc, i):
                return jax.tree.map(jnp.add, acc, chunk_grad(*slice_rows((x, y), i * b, b))), None

            total = lax.scan(body, jax.tree.map(jnp.zeros_like, p), jnp.arange(steps))[0]
            if x.shape[0] % b:
                tail = chunk_grad(x[steps * b :], y[steps * b :])
                total = jax.tree.map(jnp.add, total, tail)
            return total

        stat_repeats = max(2, repeats // 5)
        t_full = _time(lambda b=b: full_grad(params, x_all, y_all), stat_repeats)
        t_stats = _time(
            lambda b=b: (
                pe.stats(loss_fn, params, x_all, y_all, method="dense", chunk_size=b).trace_cov
            ),
            stat_repeats,
        )
        rows.append(
            {
                "batch": b,
                "batch_grad_ms": 1e3 * t_grad,
                "grads": t_grads / t_grad,
                "norms_vmap": t_vmap / t_grad,
                "norms_dense": t_dense / t_grad,
                "full_grad_ms": 1e3 * t_full,
                "stats_n": n_stats,
                "stats_60k": t_stats / t_full,
            }
        )
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`run`'s rows."""
    head = (
        "| batch | batch grad (ms) | grads | norms (vmap) | norms (dense trick) "
        f"| full grad over {rows[0]['stats_n']:,} (ms) | stats over {rows[0]['stats_n']:,} |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['batch_grad_ms']:.3f} | {r['grads']:.2f}x | "
            f"{r['norms_vmap']:.2f}x | {r['norms_dense']:.2f}x | {r['full_grad_ms']:.1f} | "
            f"{r['stats_60k']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 6,000 examples")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}")
    print(to_markdown(run(args.quick)))
