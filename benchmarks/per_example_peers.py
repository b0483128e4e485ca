"""Per-example gradients of the MLP loss: fnet, raw JAX and PyTorch, each as a ratio to the
plain batch gradient of the same framework, measured in one run.

At batch 32, 128, 512: the batch gradient, materialised per-example gradients, per-example
norms, and (fnet) the statistics pass at that batch; then ``fnet.per_example.stats`` over
60,000 examples against one batch gradient over the same 60,000. Peers: raw
``jax.vmap(jax.grad)``, ``torch.func.vmap(torch.func.grad)`` and a PyTorch loop of
per-example backward passes. Page faults per call are reported: on CPU the fresh
``B x params`` buffer of materialised gradients is paid for in faults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import optional_import, peak_rss_subprocess, ratio, time_interleaved
from benchmarks.peers import TORCH_THREADS, torch_dense
from benchmarks.workloads import MODELS, init_dense, mnist_like

__all__ = ["run"]


def _jax_cases(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Raw JAX: batch grad, vmap(grad) materialised, norms from vmap(grad) in one jit."""
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in init_dense(MODELS["mlp"])]
    xd, yd = jax.device_put(x), jax.device_put(y)

    def loss(p, xb, yb):
        h = jnp.tanh(xb @ p[0][0] + p[0][1])
        s = h @ p[1][0] + p[1][1]
        picked = jnp.take_along_axis(s, yb[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(s, axis=1) - picked)

    def one(p, xi, yi):
        return loss(p, xi[None], yi[None])

    batch_grad = jax.jit(jax.grad(loss))
    per_ex = jax.jit(jax.vmap(jax.grad(one), in_axes=(None, 0, 0)))

    @jax.jit
    def norms(p, xb, yb):
        g = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(p, xb, yb)
        return jnp.sqrt(sum(jnp.sum(a.reshape(a.shape[0], -1) ** 2, 1) for a in jax.tree.leaves(g)))

    return {
        "batch grad": lambda: batch_grad(params, xd, yd),
        "grads": lambda: per_ex(params, xd, yd),
        "norms": lambda: norms(params, xd, yd),
    }


def _fnet_parts() -> tuple[Any, Any]:
    import fnet

    model = fnet.models.mlp([200], 10, "tanh")
    loss_fn = fnet.per_example.model_loss(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, 784))
    return loss_fn, params


def _fnet_cases(x: np.ndarray, y: np.ndarray, stats: bool) -> dict[str, Callable[[], Any]]:
    """fnet: batch grad of the same loss, grads and norms (auto and vmap paths), stats."""
    from fnet import per_example as pe

    loss_fn, params = _fnet_parts()
    xd, yd = jax.device_put(x), jax.device_put(y)
    batch_grad = jax.jit(jax.grad(loss_fn))
    cases: dict[str, Callable[[], Any]] = {
        "batch grad": lambda: batch_grad(params, xd, yd),
        "grads": lambda: pe.grads(loss_fn, params, xd, yd),
        "grads (vmap)": lambda: pe.grads(loss_fn, params, xd, yd, method="vmap"),
        "norms": lambda: pe.norms(loss_fn, params, xd, yd),
        "norms (vmap)": lambda: pe.norms(loss_fn, params, xd, yd, method="vmap"),
    }
    if stats:
        cases["stats"] = lambda: pe.stats(loss_fn, params, xd, yd).b_simple
    return cases


def _torch_cases(torch: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    """PyTorch eager: batch grad, torch.func grads and norms, a per-example loop."""
    from torch.func import functional_call, grad, vmap

    torch.set_num_threads(TORCH_THREADS)
    model = torch_dense(MODELS["mlp"])
    plist = list(model.parameters())
    params = {k: v.detach() for k, v in model.named_parameters()}
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    ce = torch.nn.functional.cross_entropy

    def one(p, xi, yi):
        return ce(functional_call(model, p, (xi[None],)), yi[None])

    per_ex = vmap(grad(one), in_dims=(None, 0, 0))

    def batch_grad():
        return torch.autograd.grad(ce(model(xt), yt), plist)

    def norms():
        g = per_ex(params, xt, yt)
        return torch.sqrt(sum(a.reshape(a.shape[0], -1).pow(2).sum(1) for a in g.values()))

    def loop():
        rows = [torch.autograd.grad(ce(model(xt[i : i + 1]), yt[i : i + 1]), plist)
                for i in range(xt.shape[0])]  # fmt: skip
        return [torch.stack(g) for g in zip(*rows, strict=True)]

    return {
        "batch grad": batch_grad,
        "grads": lambda: per_ex(params, xt, yt),
        "norms": norms,
        "grads (loop)": loop,
    }


THP_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
"""glibc's malloc asks for transparent huge pages: 512x fewer faults on big buffers."""


def _rows(
    batch: int | str, timings: dict[Any, Any], torch_func: float | None, allocator: str
) -> list[dict]:
    rows = []
    for key, t in timings.items():
        framework, what = key
        base = timings.get((framework, "batch grad"))
        rows.append(
            {
                "allocator": allocator,
                "batch": batch,
                "framework": framework,
                "computes": what,
                "median_ms": t.median * 1e3,
                "spread": t.spread,
                "x_batch_grad": ratio(t.median, base.median if base else None),
                "x_torch_func_grads": ratio(t.median, torch_func) if what == "grads" else None,
                "minflt_per_call": t.minflt,
                "compile_s": t.compile_s,
            }
        )
    return rows


def measure(quick: bool, allocator: str = "default") -> dict[str, list[dict]]:
    """All the timings of this process (its allocator is fixed when it starts)."""
    torch, note = optional_import("torch")
    batches = (32,) if quick else (32, 128, 512)
    repeats = 2 if quick else 5
    min_round = 0.0 if quick else 0.05
    rows: list[dict] = []
    for batch in batches:
        x, y = mnist_like(batch, seed=batch)
        cases: dict[tuple[str, str], Callable[[], Any]] = {}
        for framework, made in (
            ("fnet", _fnet_cases(x, y, stats=True)),
            ("jax", _jax_cases(x, y)),
            ("torch", _torch_cases(torch, x, y) if torch is not None else {}),
        ):
            cases.update({(framework, k): v for k, v in made.items()})
        timings = time_interleaved(cases, repeats=repeats, min_round_s=min_round)
        tf = timings.get(("torch", "grads"))
        rows += _rows(batch, timings, tf.median if tf else None, allocator)
    if note:
        rows.append({"allocator": allocator, "framework": "torch", "computes": note})
    n = 2_000 if quick else 60_000
    x, y = mnist_like(n, seed=7)
    stats_cases = {("fnet", k): v for k, v in _fnet_cases(x, y, stats=True).items()
                   if k in ("batch grad", "stats")}  # fmt: skip
    timings = time_interleaved(stats_cases, repeats=2 if quick else 5)
    rows += _rows(f"N={n}", timings, None, allocator)
    return {"rows": rows}


def run(quick: bool) -> list[dict]:
    """Rows: one per (allocator, batch, framework, computation).

    The default glibc allocator is measured in this process; the full run repeats
    everything in a fresh process with :data:`THP_ENV` (huge pages for big buffers).
    """
    rows = measure(quick)["rows"]
    if not quick:
        try:
            rows += peak_rss_subprocess(
                "benchmarks.per_example_peers", "measure",
                {"quick": quick, "allocator": "glibc hugetlb=1"}, env=THP_ENV,
            )["rows"]  # fmt: skip
        except RuntimeError as err:
            rows.append({"allocator": "glibc hugetlb=1", "computes": f"failed: {err}"[:200]})
    return rows
