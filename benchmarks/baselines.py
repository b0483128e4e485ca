"""Framework-free references: a hand-written NumPy SGD epoch and the float32 matmul peak."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.harness import time_interleaved
from benchmarks.workloads import DenseSpec, init_dense

__all__ = ["matmul_peak", "numpy_epoch"]


def numpy_epoch(
    spec: DenseSpec, x: np.ndarray, y: np.ndarray, batch_size: int, lr: float = 0.1
) -> Callable[[], list[np.ndarray]]:
    """A closure that trains one epoch of SGD on softmax cross-entropy in plain NumPy.

    Each call draws a fresh permutation, gathers each batch, and updates the weights in
    place (tanh between layers). Returns the list of weight arrays.
    """
    layers = [(w.copy(), b.copy()) for w, b in init_dense(spec)]
    rng = np.random.default_rng(1)
    n = x.shape[0]
    steps = n // batch_size
    eye = np.eye(spec.sizes[-1], dtype=np.float32)

    def epoch() -> list[np.ndarray]:
        perm = rng.permutation(n)
        for i in range(steps):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            acts = [x[idx]]
            for j, (w, b) in enumerate(layers):
                z = acts[-1] @ w
                z += b
                if j < len(layers) - 1:
                    np.tanh(z, out=z)
                acts.append(z)
            s = acts[-1]
            s -= s.max(axis=1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=1, keepdims=True)
            s -= eye[y[idx]]
            s *= lr / batch_size  # the learning rate folded into the output delta
            delta = s
            for j in range(len(layers) - 1, -1, -1):
                w, b = layers[j]
                a = acts[j]
                if j > 0:
                    back = delta @ w.T
                    back *= 1.0 - a * a  # tanh'
                w -= a.T @ delta
                b -= delta.sum(axis=0)
                if j > 0:
                    delta = back
        return [w for w, _ in layers]

    return epoch


def matmul_peak(*, quick: bool, repeats: int = 5) -> list[dict]:
    """Measured float32 GEMM rate (GFLOP/s) of ``jnp`` and NumPy: the compute roof.

    ``2048^3`` (``256^3`` when ``quick``); 2 n^3 FLOPs per product.
    """
    import jax
    import jax.numpy as jnp

    n = 256 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    aj, bj = jax.device_put(a), jax.device_put(b)
    mm = jax.jit(jnp.matmul)
    timings = time_interleaved(
        {"jnp.matmul (XLA)": lambda: mm(aj, bj), "numpy.matmul (BLAS)": lambda: a @ b},
        repeats=2 if quick else repeats,
    )
    flops = 2.0 * n**3
    return [
        {
            "framework": name,
            "size": f"{n}^3",
            "gflops": flops / t.median / 1e9,
            "spread": t.spread,
            "median_ms": t.median * 1e3,
        }
        for name, t in timings.items()
    ]
