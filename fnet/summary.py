"""Counting parameters and summarising a model, without allocating its parameters."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnet.core import AnyModel, as_shape, as_stateful
from fnet.errors import ShapeError

__all__ = ["LayerSummary", "ModelSummary", "abstract_init", "param_count", "summary"]


def param_count(params: Any) -> int:
    """Total number of scalars in a pytree (weights + biases), as an exact Python int.

    Works on arrays and on ``jax.ShapeDtypeStruct`` leaves (from ``abstract_init``).
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def abstract_init(model: AnyModel, input_shape, key: jax.Array | None = None):
    """``(output_shape, params, state)`` of ``model`` as shapes only, via ``jax.eval_shape``.

    ``params`` and ``state`` are pytrees of ``jax.ShapeDtypeStruct``: nothing is allocated,
    so this works for models far larger than memory.
    """
    key = jax.random.key(0) if key is None else key
    shapes: dict[str, Any] = {}

    def params_and_state(k):
        out, params, state = as_stateful(model).init(k, input_shape)
        shapes["out"] = out  # a static Python value, captured at trace time
        return params, state

    params, state = jax.eval_shape(params_and_state, key)
    return shapes["out"], params, state


def _flops(model: AnyModel, params, state, input_shape) -> float | None:
    """FLOPs of one forward pass at batch size 1 (when the batch is -1), from XLA's cost
    analysis of the lowered computation; ``None`` where the backend reports none."""
    shape = (1 if input_shape[0] == -1 else input_shape[0], *input_shape[1:])
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    apply = as_stateful(model).apply
    try:
        lowered = jax.jit(lambda p, s, x: apply(p, s, x)[0]).lower(params, state, x)
        cost = lowered.cost_analysis()
    except Exception:  # cost analysis is best-effort and backend-specific
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    return None if not cost else float(cost.get("flops", 0.0))


class LayerSummary(NamedTuple):
    """One row of a summary: a layer's name, output shape, parameter count and FLOPs."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    flops: float | None


class ModelSummary(NamedTuple):
    """A model's layer table and totals; ``str()`` renders it as a text table."""

    rows: tuple[LayerSummary, ...]
    input_shape: tuple
    output_shape: tuple
    total_params: int
    total_flops: float | None

    def __str__(self) -> str:
        head = ("layer", "output shape", "params", "FLOPs/example")
        body = [
            (r.name, str(r.output_shape), f"{r.params:,}", _fmt_flops(r.flops)) for r in self.rows
        ]
        total = (
            "total",
            str(self.output_shape),
            f"{self.total_params:,}",
            _fmt_flops(self.total_flops),
        )
        widths = [max(len(row[i]) for row in [head, *body, total]) for i in range(4)]
        line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        rule = "  ".join("-" * w for w in widths)
        return "\n".join(
            [f"input {self.input_shape}", line(head), rule, *map(line, body), rule, line(total)]
        )


def _fmt_flops(flops: float | None) -> str:
    return "?" if flops is None else f"{flops:,.0f}"


def summary(model: AnyModel, input_shape) -> ModelSummary:
    """A table of ``model``'s top-level layers: output shapes, parameter counts, FLOPs.

    Shapes come from ``jax.eval_shape`` (nothing allocated); FLOPs per example from the
    compiler's cost analysis of each layer's lowered forward pass. ``print(summary(...))``
    shows the table. Models without children (a single layer) give one row.
    """
    shape = as_shape(input_shape, "summary")
    out, params, state = abstract_init(model, shape)
    total = param_count(params)
    rows = _chain_rows(model, shape, out, total)
    if rows is None:  # not a chain (a single layer, parallel branches): one row
        flops = _flops(model, params, state, shape)
        rows = (LayerSummary(model.name, model.kind, out, total, flops),)
    return ModelSummary(rows, shape, out, total, _flops(model, params, state, shape))


def _chain_rows(model: AnyModel, shape: tuple, out: tuple, total: int):
    """Rows for a model whose children form a chain (serial-like), else ``None``."""
    if not model.children:
        return None
    rows, current = [], shape
    try:
        for name, child in model.children:
            child_out, params, state = abstract_init(child, current)
            flops = _flops(child, params, state, current)
            rows.append(LayerSummary(name, child.kind, child_out, param_count(params), flops))
            current = child_out
    except (ShapeError, TypeError):
        return None
    if tuple(current) != tuple(out) or sum(r.params for r in rows) != total:
        return None
    return tuple(rows)
