"""The machine's roofs, measured in the same run as everything else.

* compute: float32 GEMM 2048^3 through XLA (``jnp.matmul``) and NumPy's BLAS;
* memory bandwidth: NumPy copy of a 256 MiB array (bytes read + written per second);
* page faults: the cost of one minor fault, from filling a freshly mapped 256 MiB array
  against filling the same array again (already mapped);
* dispatch: one call of a jitted scalar ``x + 1`` (the floor of any ``jax.jit`` step).
"""

from __future__ import annotations

import resource
import time

import numpy as np

from benchmarks.baselines import matmul_peak
from benchmarks.harness import time_interleaved

__all__ = ["run"]


def _set_numpy_hugepage(enabled: bool) -> bool:
    """Turn NumPy's ``madvise(MADV_HUGEPAGE)`` of big arrays on/off; returns the old value."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _set_madvise_hugepage  # type: ignore[no-redef]
    return bool(_set_madvise_hugepage(enabled))


def _fault_cost(nbytes: int, huge: bool) -> dict:
    """Microseconds per minor page fault when first touching ``nbytes`` of fresh memory,
    with 4 KiB pages or (``huge``) transparent 2 MiB pages."""
    old = _set_numpy_hugepage(huge)
    try:
        return _fault_cost_now(nbytes, "2 MiB (THP)" if huge else "4 KiB")
    finally:
        _set_numpy_hugepage(old)


def _fault_cost_now(nbytes: int, pages: str) -> dict:
    fresh, touched, faults = [], [], []
    for _ in range(3):
        a = np.empty(nbytes // 4, np.float32)  # large: glibc maps it fresh (no pages yet)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        a.fill(1.0)
        fresh.append(time.perf_counter() - t)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        t = time.perf_counter()
        a.fill(2.0)
        touched.append(time.perf_counter() - t)
        del a
    n_faults = float(np.median(faults))
    extra = float(np.median(fresh) - np.median(touched))
    return {
        "roof": f"minor page fault, {pages} pages",
        "value": extra / n_faults * 1e6 if n_faults > 0 else None,
        "unit": "us/fault",
        "note": f"{n_faults:.0f} faults to touch {nbytes / 2**20:.0f} MiB "
        f"({extra * 1e3:.1f} ms of {float(np.median(fresh)) * 1e3:.1f} ms)",
    }


def run(quick: bool) -> list[dict]:
    """Rows: roof, value, unit, note."""
    import jax

    rows = [
        {
            "roof": f"float32 GEMM, {r['framework']}",
            "value": r["gflops"],
            "unit": "GFLOP/s",
            "note": f"{r['size']}, spread {r['spread']:.2f}",
        }
        for r in matmul_peak(quick=quick)
    ]
    nbytes = (64 if quick else 256) * 2**20  # > 32 MiB: glibc maps it fresh each time
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    dst.fill(0.0)
    inc = jax.jit(lambda v: v + 1)
    scalar = jax.device_put(np.float32(0))
    timings = time_interleaved(
        {"copy": lambda: np.copyto(dst, src), "jit": lambda: inc(scalar)},
        repeats=3 if quick else 7,
        min_round_s=0.0 if quick else 0.05,
    )
    rows.append(
        {
            "roof": "memory bandwidth (NumPy copy)",
            "value": 2 * nbytes / timings["copy"].median / 1e9,
            "unit": "GB/s",
            "note": f"{nbytes / 2**20:.0f} MiB read + written, spread {timings['copy'].spread:.2f}",
        }
    )
    rows += [_fault_cost(nbytes, huge=False), _fault_cost(nbytes, huge=True)]
    rows.append(
        {
            "roof": "jax.jit dispatch (scalar x + 1)",
            "value": timings["jit"].median * 1e6,
            "unit": "us/call",
            "note": f"spread {timings['jit'].spread:.2f}",
        }
    )
    return rows
