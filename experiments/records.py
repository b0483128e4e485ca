"""What an experiment writes: ``metrics.json`` (config, metrics, data used, claims), with
the versions, device and wall time, and the quick-mode rule for verdicts."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import fnet

__all__ = ["SMOKE_VERDICT", "Timer", "device_description", "write_metrics"]

SMOKE_VERDICT = "smoke run (quick mode: tiny data and few steps, not assessed)"


def device_description() -> str:
    """E.g. ``"cpu (cpu; 2 host cores; x86_64)"``: the JAX backend and the host."""
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    return f"{dev.platform} ({kind}; {os.cpu_count()} host cores; {platform.machine()})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, jax.Array)):
        value = np.asarray(value)
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def _smoke(row: dict[str, Any]) -> dict[str, Any]:
    """A claim row of a quick run: its verdict says "smoke run" unless it was not run."""
    if str(row.get("verdict", "")).startswith("not run"):
        return row
    return {**row, "verdict": SMOKE_VERDICT}


def write_metrics(
    out: str | os.PathLike[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_info: dict[str, Any],
    wall_time: float,
    *,
    name: str,
    claims: Sequence[dict[str, Any]] = (),
    headline: Sequence[str] = (),
    figures: Sequence[str] = (),
    tables: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Write ``<out>/metrics.json`` and return what was written.

    Adds fnet's and JAX's versions, the device and the time. ``data_info`` has ``used``
    (dataset descriptions) and ``skipped`` (``{what, why}``). ``claims`` are rows from
    :func:`experiments.claims.claim_row`; when ``config["quick"]`` is true every verdict
    of a claim that ran becomes :data:`SMOKE_VERDICT` (a smoke run reproduces nothing).
    ``headline``: one-line results for the runner's summary; ``tables``: ``{title,
    lines}`` Markdown tables the runner copies into ``results.md``.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quick = bool(config.get("quick"))
    record = {
        "experiment": name,
        "config": config,
        "metrics": metrics,
        "data": {
            "used": list(data_info.get("used", [])),
            "skipped": list(data_info.get("skipped", [])),
        },
        "claims": [_smoke(dict(c)) if quick else dict(c) for c in claims],
        "headline": list(headline),
        "figures": list(figures),
        "tables": [dict(t) for t in tables],
        "wall_time_s": round(float(wall_time), 2),
        "versions": {
            "fnet": fnet.__version__,
            "jax": jax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": device_description(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record = _jsonable(record)
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


class Timer:
    """Wall-clock seconds since construction: ``t = Timer(); ...; t()``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self._start
