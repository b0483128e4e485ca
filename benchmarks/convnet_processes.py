"""The slides' convnet, fnet.fit against PyTorch eager, each in its OWN process, interleaved.

``benchmarks.convnet`` times the peers round-robin inside one process; here every case
runs in a fresh interpreter (no shared thread pools or allocator state), and the cases
alternate, round after round, so that a change in the machine's load hits them alike.
PyTorch may live in another environment: pass its interpreter with ``--torch-python``
(PyPI's default torch wheel is large; any CPU build will do).

Workload: ``fnet.models.convnet(10)`` (Conv 32 -> ReLU -> MaxPool 2 -> Conv 64 -> ReLU ->
MaxPool 2 -> Dense 128 -> ReLU -> Dense 10) on ``(N, 28, 28, 1)`` random images, SGD
lr 0.01, batch 100, ``fit`` called once per epoch (its default driver); PyTorch: the same
layers (NCHW), 2 threads, a shuffled epoch of ``N // 100`` steps.

Run: ``python -m benchmarks.convnet_processes --torch-python /path/to/python``.
Prints one JSON line per process and, last, the median samples/s, the ratio of the
medians, and the median (min, max) of the per-round ratios (the two processes of a round
run back to back, first fnet then PyTorch, and the other way round in the next round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N, HW, BATCH, CHANNELS, HIDDEN, LR = 1_000, 28, 100, (32, 64), 128, 0.01


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((N, HW, HW, 1), dtype=np.float32)
    return x, rng.integers(0, 10, size=N, dtype=np.int32)


def _torch_epoch():
    import torch  # only in the PyTorch child process

    nn = torch.nn
    torch.set_num_threads(2)
    layers: list = []
    c_in, hw = 1, HW
    for c in CHANNELS:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, hw = c, hw // 2
    layers += [nn.Flatten(), nn.Linear(hw * hw * c_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10)]
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = _data()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(1)

    def epoch():
        perm = torch.randperm(N, generator=gen)
        for i in range(N // BATCH):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()

    return epoch


def _fnet_epoch(variant: str):
    import jax  # only in the fnet child process

    from benchmarks.convnet import _fnet_case

    if variant != "fit":
        raise ValueError(variant)
    x, y = _data()
    run = _fnet_case(x, y, BATCH, CHANNELS, HIDDEN)
    return lambda: jax.block_until_ready(run())


def child(case: str, epochs: int) -> None:
    """Warm up (compile) with one epoch, then time ``epochs`` epochs; print one JSON line."""
    t0 = time.perf_counter()
    epoch = _torch_epoch() if case == "torch" else _fnet_epoch("fit")
    epoch()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t)
    rate = (N // BATCH) * BATCH / statistics.median(times)
    print(json.dumps({"case": case, "samples_per_s": rate, "first_epoch_s": warm}))


def main() -> None:
    """Alternate the two cases' processes for ``--rounds`` rounds; print medians and ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch-python", default=sys.executable)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--child", choices=["fnet", "torch"])
    args = p.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    # As the benchmarks CLI does: PyTorch's spinning OpenMP barriers otherwise take the
    # cores from everything else on a shared machine (and from itself under load).
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONPATH": str(ROOT)}
    rates: dict[str, list[float]] = {"fnet": [], "torch": []}
    pythons = {"fnet": sys.executable, "torch": args.torch_python}
    for r in range(args.rounds):
        # Who goes first alternates, so that a drift in the machine's speed within a
        # round favours neither case.
        for case in ("fnet", "torch") if r % 2 == 0 else ("torch", "fnet"):
            python = pythons[case]
            cmd = [python, "-m", "benchmarks.convnet_processes", "--child", case,
                   "--epochs", str(args.epochs)]  # fmt: skip
            out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{case} failed:\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rates[case].append(row["samples_per_s"])
    med = {k: statistics.median(v) for k, v in rates.items()}
    # Paired: each round's two processes ran back to back, so their ratio is less exposed
    # to the machine's drift between rounds than the ratio of the two medians.
    paired = [f / t for f, t in zip(rates["fnet"], rates["torch"], strict=True)]
    print(json.dumps({
        "median_samples_per_s": med,
        "fnet_over_torch": med["fnet"] / med["torch"],
        "per_round_fnet_over_torch": {
            "median": statistics.median(paired), "min": min(paired), "max": max(paired),
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
