"""The small AlexNet-style convnet: training throughput of fnet against PyTorch eager.

``fnet.models.convnet(10)`` (Conv 32 -> ReLU -> MaxPool 2 -> Conv 64 -> ReLU -> MaxPool 2
-> Dense 128 -> ReLU -> Dense 10, 3x3 SAME convs) on MNIST-shaped ``(N, 28, 28, 1)``
images, SGD lr 0.01, batch 100. Peers: PyTorch eager (NCHW, 2 threads) and the same
layers hand-written in JAX as one ``lax.scan`` epoch, all timed round-robin. fnet runs
twice: ``fit`` (one fused epoch) and its jitted ``train_step`` in a Python loop, because
XLA:CPU runs a convnet step several times slower inside a ``while`` loop.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks.harness import optional_import, ratio, time_interleaved
from benchmarks.peers import TORCH_THREADS

__all__ = ["run"]

LR = 0.01


def train_flops(hw: int, channels: tuple[int, ...], hidden: int, classes: int = 10) -> int:
    """Exact conv/matmul FLOPs of one training example (forward, weight grads, and the
    input grads of every layer but the first)."""
    layer_flops, c_in = [], 1
    for c in channels:
        layer_flops.append(2 * hw * hw * c * 9 * c_in)
        c_in, hw = c, hw // 2
    flat = hw * hw * c_in
    layer_flops += [2 * flat * hidden, 2 * hidden * classes]
    return 2 * sum(layer_flops) + sum(layer_flops[1:])


def _data(n: int, hw: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.random((n, hw, hw, 1), dtype=np.float32),
        rng.integers(0, 10, size=n, dtype=np.int32),
    )


def _fnet_case(x, y, batch: int, channels, hidden: int) -> Any:
    import fnet
    from fnet.train import fit, supervised

    model = fnet.models.convnet(10, channels=channels, hidden=hidden)
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    xd, yd = jax.device_put(x), jax.device_put(y)
    opt = optax.sgd(LR)  # one object: fit's compiled epoch is cached on it
    box: dict[str, Any] = {"params": params, "epoch": 0}

    def epoch():
        box["epoch"] += 1
        box["params"] = fit(
            objective, box["params"], opt, xd, yd, key=jax.random.key(box["epoch"]),
            epochs=1, batch_size=batch, progress=False,
        ).params  # fmt: skip
        return box["params"]

    return epoch


def _fnet_loop_case(x, y, batch: int, channels, hidden: int) -> Any:
    """fnet's jitted ``train_step`` in a Python loop: no ``while`` loop around the step."""
    import fnet
    from fnet.train import TrainState, supervised, train_step

    model = fnet.models.convnet(10, channels=channels, hidden=hidden)
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    opt = optax.sgd(LR)
    step = train_step(objective, opt, donate=True)
    xd, yd = jax.device_put(x), jax.device_put(y)
    steps = x.shape[0] // batch
    permute = jax.jit(lambda k: jax.random.permutation(k, xd.shape[0])[: steps * batch])
    gather = jax.jit(lambda rows, i: (xd[rows[i]], yd[rows[i]]))
    box: dict[str, Any] = {"ts": TrainState.create(params, opt), "key": jax.random.key(1)}

    def epoch():
        box["key"], k, k_step = jax.random.split(box["key"], 3)
        rows = permute(k).reshape(steps, batch)
        ts = box["ts"]
        for i in range(steps):
            ts, _ = step(ts, *gather(rows, np.int32(i)), k_step)
        box["ts"] = ts
        return ts.params

    return epoch


def _jax_case(x, y, batch: int, channels, hidden: int) -> Any:
    """The same net hand-written on ``lax.conv_general_dilated``, epoch fused by scan."""
    rng = np.random.default_rng(0)
    convs, c_in, hw = [], 1, x.shape[1]
    for c in channels:
        w = rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c)).astype(np.float32)
        convs.append((jnp.asarray(w), jnp.zeros(c)))
        c_in, hw = c, hw // 2
    flat = hw * hw * c_in
    dense = [
        (jnp.asarray(rng.normal(0, np.sqrt(2 / flat), (flat, hidden)).astype(np.float32)),
         jnp.zeros(hidden)),
        (jnp.asarray(rng.normal(0, np.sqrt(1 / hidden), (hidden, 10)).astype(np.float32)),
         jnp.zeros(10)),
    ]  # fmt: skip

    def apply(p, h):
        for w, b in p[0]:
            h = lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
            h = jax.nn.relu(h + b)
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p[1][0][0] + p[1][0][1])
        return h @ p[1][1][0] + p[1][1][1]

    def loss(p, xb, yb):
        s = apply(p, xb)
        return jnp.mean(jax.nn.logsumexp(s, 1) - jnp.take_along_axis(s, yb[:, None], 1)[:, 0])

    steps = x.shape[0] // batch
    xd, yd = jax.device_put(x), jax.device_put(y)

    @partial(jax.jit, donate_argnums=0)
    def run(p, key):
        rows = jax.random.permutation(key, xd.shape[0])[: steps * batch].reshape(steps, batch)

        def body(q, idx):
            g = jax.grad(loss)(q, xd[idx], yd[idx])
            return jax.tree.map(lambda a, d: a - LR * d, q, g), None

        return lax.scan(body, p, rows)[0]

    box: dict[str, Any] = {"p": (convs, dense), "key": jax.random.key(1)}

    def epoch():
        box["key"], k = jax.random.split(box["key"])
        box["p"] = run(box["p"], k)
        return box["p"]

    return epoch


def _torch_case(
    torch: Any, x, y, batch: int, channels, hidden: int, bn_dropout: bool = False
) -> Any:
    """PyTorch eager, the same net (``bn_dropout``: BatchNorm after each convolution and
    Dropout(0.5) before the last layer, as ``benchmarks.engine``'s BatchNorm net)."""
    nn = torch.nn
    torch.set_num_threads(TORCH_THREADS)
    layers: list[Any] = []
    c_in, hw = 1, x.shape[1]
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1)]
        layers += [nn.BatchNorm2d(c)] if bn_dropout else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        c_in, hw = c, hw // 2
    layers += [nn.Flatten(), nn.Linear(hw * hw * c_in, hidden), nn.ReLU()]
    layers += [nn.Dropout(0.5)] if bn_dropout else []
    layers += [nn.Linear(hidden, 10)]
    model = nn.Sequential(*layers)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y.astype(np.int64))
    n, steps = x.shape[0], x.shape[0] // batch
    gen = torch.Generator().manual_seed(1)

    def epoch():
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()

    return epoch


def run(quick: bool) -> list[dict]:
    """Rows: one per framework, samples/s and ratio to PyTorch eager."""
    if quick:
        n, hw, batch, channels, hidden, repeats = 64, 12, 32, (4, 8), 16, 1
    else:
        n, hw, batch, channels, hidden, repeats = 1_000, 28, 100, (32, 64), 128, 5
    x, y = _data(n, hw)
    cases = {
        "fnet.fit": _fnet_case(x, y, batch, channels, hidden),
        "fnet train_step, Python loop": _fnet_loop_case(x, y, batch, channels, hidden),
        "jax.lax.scan epoch (hand-written)": _jax_case(x, y, batch, channels, hidden),
    }
    torch, note = optional_import("torch")
    if torch is not None:
        cases["PyTorch eager"] = _torch_case(torch, x, y, batch, channels, hidden)
    timings = time_interleaved(cases, repeats=repeats)
    examples = (n // batch) * batch
    flops = train_flops(hw, channels, hidden)
    rate = {k: examples / t.median for k, t in timings.items()}
    workload = f"convnet {hw}x{hw}x1 ch={channels} B={batch} N={n}"
    rows = [
        {
            "workload": workload,
            "framework": k,
            "samples_per_s": r,
            "spread": timings[k].spread,
            "x_pytorch": ratio(r, rate.get("PyTorch eager")),
            "gflops": r * flops / 1e9,
            "compile_s": timings[k].compile_s,
        }
        for k, r in rate.items()
    ]
    if note:
        rows.append({"workload": workload, "framework": "PyTorch eager", "note": note})
    return rows
