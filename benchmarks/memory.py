"""Peak resident memory of ``fnet.per_example.stats`` over N examples, as N grows.

The dense-trick path (``method="auto"`` for this MLP) runs at N = 15k, 30k, 60k, the
chunked ``vmap`` path at 5k, 10k, 20k. Each N runs in a fresh Python process
(:func:`benchmarks.harness.peak_rss_subprocess`). Inside it, the MLP 784-200-10
statistics pass is called once to compile, the peak RSS is reset (Linux
``clear_refs``), and the second call's peak above the RSS just before it is the pass's
working memory: flat in N for a streaming reduction, growing like
``N x params x 4 bytes`` (last column) for a materialised one. ``sq_norms`` (N floats)
is part of the result, so a few hundred KB of growth is expected.
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness import peak_rss_subprocess

__all__ = ["measure_stats", "run"]


def measure_stats(n: int, method: Any) -> dict[str, Any]:
    """In a fresh process: memory of one ``stats`` call over ``n`` MNIST-shaped examples."""
    import time

    import jax

    import fnet
    from benchmarks.harness import current_rss_mb, peak_rss_mb, reset_peak_rss
    from benchmarks.workloads import mnist_like

    model = fnet.models.mlp([200], 10, "tanh")
    loss_fn = fnet.per_example.model_loss(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, 784))
    x, y = mnist_like(n)
    xd, yd = jax.device_put(x), jax.device_put(y)
    del x, y
    jax.block_until_ready(fnet.per_example.stats(loss_fn, params, xd, yd, method=method).grad)
    before = current_rss_mb()
    resettable = reset_peak_rss()
    t = time.perf_counter()
    out = fnet.per_example.stats(loss_fn, params, xd, yd, method=method)
    jax.block_until_ready(out.grad)
    seconds = time.perf_counter() - t
    return {
        "n": n,
        "method": out.method,
        "data_mb": (xd.nbytes + yd.nbytes) / 2**20,
        "rss_before_call_mb": before,
        "call_peak_mb": peak_rss_mb() if resettable else None,
        "call_s": seconds,
        "b_simple": float(out.b_simple),
        "n_params": sum(a.size for a in jax.tree.leaves(params)),
    }


def run(quick: bool) -> list[dict]:
    """Rows: one per (method, N): whole-process peak, the call's extra memory, and what a
    materialised ``N x params`` array would take."""
    plan = (
        {"auto": (500, 1_000)}
        if quick
        else {
            "auto": (15_000, 30_000, 60_000),
            "vmap": (5_000, 10_000, 20_000),  # ~0.4 ms per example: 60k would take 25 s a call
        }
    )
    rows = []
    for method, sizes in plan.items():
        for n in sizes:
            r = peak_rss_subprocess(
                "benchmarks.memory", "measure_stats", {"n": n, "method": method}
            )
            extra = None
            if r["call_peak_mb"] is not None:
                extra = r["call_peak_mb"] - r["rss_before_call_mb"]
            rows.append(
                {
                    "method": f"{method} -> {r['method']}",
                    "n": n,
                    "data_mb": r["data_mb"],
                    "process_peak_mb": r["peak_rss_mb"],
                    "call_extra_mb": extra,
                    "call_s": r["call_s"],
                    "materialised_would_be_mb": n * r["n_params"] * 4 / 2**20,
                    "b_simple": r["b_simple"],
                }
            )
    return rows
