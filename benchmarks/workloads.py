"""The shared workloads: MNIST-shaped data, the two dense models, their exact FLOP counts.

Every framework trains the same architectures on the same arrays, so throughputs compare
like with like. The data are random (values do not change the speed of a dense net).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["MODELS", "DenseSpec", "init_dense", "mnist_like"]

N_FEATURES = 784
N_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class DenseSpec:
    """A chain of Dense layers with ``tanh`` between them (none after the last).

    Attributes:
      name: ``"mlp"`` (784-200-tanh-10) or ``"linear"`` (784-10).
      sizes: layer widths, input first.
    """

    name: str
    sizes: tuple[int, ...]

    @property
    def n_params(self) -> int:
        """Weights and biases."""
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    @property
    def train_flops(self) -> int:
        """Exact matmul FLOPs of one training example: forward, weight grads, and input
        grads of every layer but the first (the data need no gradient)."""
        mults = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        return 2 * (2 * sum(mults) + sum(mults[1:]))

    @property
    def grad_flops(self) -> int:
        """Matmul FLOPs of one example's contribution to a batch gradient (same count)."""
        return self.train_flops


MODELS: dict[str, DenseSpec] = {
    "mlp": DenseSpec("mlp", (N_FEATURES, 200, N_CLASSES)),
    "linear": DenseSpec("linear", (N_FEATURES, N_CLASSES)),
}


def mnist_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random examples shaped like flattened MNIST: float32 ``(n, 784)`` in ``[0, 1)``
    and int32 labels ``(n,)`` in ``[0, 10)``."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, N_FEATURES), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, size=n, dtype=np.int32)
    return x, y


def init_dense(spec: DenseSpec, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-normal weights ``(in, out)`` and zero biases, float32, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(spec.sizes[:-1], spec.sizes[1:], strict=True):
        w = rng.normal(0.0, np.sqrt(2.0 / (a + b)), size=(a, b)).astype(np.float32)
        layers.append((w, np.zeros(b, np.float32)))
    return layers
