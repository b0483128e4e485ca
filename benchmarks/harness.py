"""Timing, page-fault and memory measurement, and Markdown/JSON output for the suite.

Every benchmark function returns rows (``list[dict]``). Times come from
:func:`time_interleaved`: each case is called once to warm up (that call, which traces
and compiles, is reported as ``compile_s``), then the cases are run round-robin
``repeats`` times, so slow phases of a shared, noisy machine hit every case alike and
ratios taken within one run stay meaningful. Results are blocked on
(``jax.block_until_ready``) inside the timed region.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "SKIP_PEERS_ENV",
    "Timing",
    "machine_info",
    "markdown_table",
    "optional_import",
    "peak_rss_subprocess",
    "ratio",
    "time_call",
    "time_interleaved",
]


K = TypeVar("K", bound=Hashable)

ENV_RECORDED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLA_FLAGS", "GLIBC_TUNABLES")
SKIP_PEERS_ENV = "FNET_BENCH_SKIP_PEERS"
"""Set to ``1`` (``--skip-peers``) and :func:`optional_import` reports every peer absent."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls of one case.

    Attributes:
      compile_s: the first (warm-up) call: tracing, compiling and one run.
      times: seconds of each timed call, in order.
      minflt: minor page faults per timed call (``ru_minflt`` delta / calls).
    """

    compile_s: float
    times: tuple[float, ...]
    minflt: float

    @property
    def median(self) -> float:
        """Median seconds per call."""
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Relative spread: interquartile range / median (max-min for fewer than 4 calls)."""
        ts = sorted(self.times)
        if len(ts) >= 4:
            q = statistics.quantiles(ts, n=4)
            lo, hi = q[0], q[2]
        else:
            lo, hi = ts[0], ts[-1]
        return (hi - lo) / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary numbers (for rows and JSON)."""
        return {
            "median_s": self.median,
            "spread": self.spread,
            "min_s": min(self.times),
            "compile_s": self.compile_s,
            "minflt": self.minflt,
            "repeats": len(self.times),
        }


def _block(out: Any) -> Any:
    """Wait for JAX results (a no-op for NumPy and CPU PyTorch values)."""
    if "jax" in sys.modules:
        import jax

        return jax.block_until_ready(out)
    return out


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


SETTLE_S = 0.2
"""Seconds of sleep before each timed case: lets the previous case's worker threads park.

Measured: an fnet case timed right after the hand-written NumPy case ran ~1.5x slower
than the same case timed before it (OpenBLAS's threads keep spinning for a while after
a BLAS call and take the 2 cores; MLP 784-200-10, B=100, 5 repeats). A case's rate
therefore depended on which case preceded it; with the pause it does not."""


def time_interleaved(
    cases: Mapping[K, Callable[[], Any]],
    *,
    repeats: int,
    min_round_s: float = 0.0,
    settle_s: float = SETTLE_S,
) -> dict[K, Timing]:
    """Time several zero-argument callables round-robin.

    Each case is first called once (timed as ``compile_s``). With ``min_round_s`` a case
    that takes less is called again to set how many calls one round makes (so a 50 us
    call is timed over about ``min_round_s``). Then each round calls every case that many
    times in a row and records the mean time per call, after sleeping ``settle_s``
    seconds (see :data:`SETTLE_S`; not timed). A case that keeps state (a training loop
    updating its params) does so through its own closure.
    """
    compile_s: dict[K, float] = {}
    number: dict[K, int] = {}
    for name, fn in cases.items():
        t = time.perf_counter()
        _block(fn())
        compile_s[name] = time.perf_counter() - t
        number[name] = 1
        if compile_s[name] < min_round_s:
            t = time.perf_counter()
            _block(fn())
            once = max(time.perf_counter() - t, 1e-7)
            number[name] = max(1, min(10_000, round(min_round_s / once)))
    times: dict[K, list[float]] = {name: [] for name in cases}
    faults: dict[K, int] = dict.fromkeys(cases, 0)
    for _ in range(repeats):
        for name, fn in cases.items():
            if settle_s:
                time.sleep(settle_s)
            f0 = _minflt()
            t = time.perf_counter()
            for _ in range(number[name]):
                _block(fn())
            times[name].append((time.perf_counter() - t) / number[name])
            faults[name] += _minflt() - f0
    return {
        name: Timing(compile_s[name], tuple(times[name]), faults[name] / (repeats * number[name]))
        for name in cases
    }


def time_call(fn: Callable[[], Any], *, repeats: int, min_round_s: float = 0.0) -> Timing:
    """Time one zero-argument callable (see :func:`time_interleaved`)."""
    return time_interleaved({"fn": fn}, repeats=repeats, min_round_s=min_round_s)["fn"]


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def optional_import(name: str) -> tuple[Any, str | None]:
    """``(module, None)``, or ``(None, note)`` when ``name`` (an optional peer) is absent."""
    if os.environ.get(SKIP_PEERS_ENV) == "1":
        return None, f"skipped: {name} (--skip-peers)"
    try:
        return importlib.import_module(name), None
    except ImportError as err:
        return None, f"skipped: {name} not installed ({err.__class__.__name__})"


def peak_rss_subprocess(
    module: str,
    function: str,
    kwargs: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run ``module.function(**kwargs)`` in a fresh Python and report its memory.

    The function returns a JSON-able dict; this adds ``peak_rss_mb`` (the child's
    ``VmHWM`` at exit: ``ru_maxrss`` would include the parent's RSS at fork, which Linux
    carries across ``exec``) and the child's wall time. A fresh process makes the peak that
    one call's and nothing else's; ``env`` adds environment variables that must be set
    before the process starts (``GLIBC_TUNABLES``).
    """
    code = (
        "import json, sys, importlib\n"
        "from benchmarks.harness import peak_rss_mb\n"
        f"fn = getattr(importlib.import_module({module!r}), {function!r})\n"
        f"out = fn(**json.loads({json.dumps(dict(kwargs))!r}))\n"
        "out['peak_rss_mb'] = peak_rss_mb()\n"
        "sys.stdout.write('\\nRESULT ' + json.dumps(out) + '\\n')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=timeout, check=False, env=child_env,
    )  # fmt: skip
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module}.{function}({kwargs}) failed:\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    out["subprocess_s"] = wall
    return out


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux ``/proc/self/statm``), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) on Linux; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """``VmHWM`` (peak resident memory since start or :func:`reset_peak_rss`), MiB;
    ``ru_maxrss`` where ``/proc`` is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory, Python and the versions of every framework present."""
    versions: dict[str, str] = {}
    for name in ("jax", "jaxlib", "numpy", "optax", "torch", "flax", "equinox", "haiku"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        versions[name] = str(getattr(module, "__version__", "?"))
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "env": {k: os.environ[k] for k in ENV_RECORDED if k in os.environ},
    }
    if "jax" in versions:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    return info


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        mag = abs(value)
        if mag == 0:
            return "0"
        if mag >= 1e5:
            return f"{value:,.0f}"
        if mag >= 100:
            return f"{value:.0f}"
        if mag >= 10:
            return f"{value:.1f}"
        if mag >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a GitHub Markdown table; columns default to the union of keys, in order."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
