"""What the compiler does with a training step (SEEDS §5): the jaxpr of the loss and of
its gradient (autodiff builds the backward graph from the forward one), the optimized
HLO's fusions counted before and after XLA, a dead value shown eliminated, the compiled
memory footprint and cost, and a picture of the slides' sigmoid-neuron graph with its
forward values and backward gradients on the edges, computed by JAX.

Run: ``python -m experiments.graph [--quick] [--out runs/graph]``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, plotting, records
from experiments.claims import claim_row
from fnet import losses, models

NAME = "graph"
NEURON_INPUTS = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}

# --------------------------------------------------------------------------- HLO text


def count_eqns(jaxpr: Any) -> int:
    """Equations of a (closed) jaxpr, counting those inside sub-jaxprs (pjit, scan...)."""
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0
    for eqn in inner.eqns:
        total += 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    total += count_eqns(sub)
    return total


_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*\S+\s+([\w\-]+)\(", re.M)


def entry_ops(hlo: str) -> list[str]:
    """Opcodes of the ENTRY computation of an HLO module's text (what actually runs)."""
    start = hlo.find("ENTRY")
    body = hlo[start : hlo.find("\n}", start)]
    return [m.group(1) for m in _INSTR.finditer(body)]


def all_ops(hlo: str) -> list[str]:
    """Opcodes of every instruction in the module (all computations)."""
    return [m.group(1) for m in _INSTR.finditer(hlo)]


# --------------------------------------------------------------------------- the step


def mlp_step_artifacts(out: pathlib.Path, batch: int) -> dict[str, Any]:
    """Jaxprs, HLO before/after XLA, memory and cost of one SGD step of 784-200-tanh-10."""
    model = models.mlp([200], 10, "tanh")
    _, params = model.init(jax.random.key(0), (-1, 784))
    x = jax.random.uniform(jax.random.key(1), (batch, 784), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)

    def loss(p, x, y):
        return losses.softmax_cross_entropy(model.apply(p, x), y)

    def step(p, x, y):
        g = jax.grad(loss)(p, x, y)
        return jax.tree.map(lambda w, d: w - 0.1 * d, p, g)

    jaxpr_loss = jax.make_jaxpr(loss)(params, x, y)
    jaxpr_grad = jax.make_jaxpr(jax.grad(loss))(params, x, y)
    (out / "jaxpr_loss.txt").write_text(str(jaxpr_loss) + "\n")
    (out / "jaxpr_grad.txt").write_text(str(jaxpr_grad) + "\n")

    lowered = jax.jit(step).lower(params, x, y)
    before = lowered.as_text(dialect="hlo")
    compiled = lowered.compile()
    after = compiled.as_text()
    (out / "step_hlo_before.txt").write_text(before)
    (out / "step_hlo_after.txt").write_text(after)
    donated = jax.jit(step, donate_argnums=0).lower(params, x, y).compile()

    def mem(c: Any) -> dict[str, int]:
        m = c.memory_analysis()
        keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                "temp_size_in_bytes", "generated_code_size_in_bytes")  # fmt: skip
        return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}

    def cost(c: Any) -> dict[str, float]:
        ca = c.cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        return {k: float(ca[k]) for k in ("flops", "transcendentals", "bytes accessed") if k in ca}

    ops_before, ops_after = all_ops(before), entry_ops(after)
    return {
        "batch": batch,
        "jaxpr_loss_eqns": count_eqns(jaxpr_loss),
        "jaxpr_grad_eqns": count_eqns(jaxpr_grad),
        "hlo_before_instructions": len(ops_before),
        "hlo_before_fusions": ops_before.count("fusion"),
        "hlo_after_entry_instructions": len(ops_after),
        "hlo_after_fusions": ops_after.count("fusion"),
        "hlo_after_entry_ops": sorted(set(ops_after)),
        "memory": mem(compiled),
        "memory_donated": mem(donated),
        "cost_before": cost(lowered),
        "cost_after": cost(compiled),
    }


def dead_value_demo(out: pathlib.Path) -> dict[str, Any]:
    """Two dead values: one never used (dropped by JAX when lowering the jaxpr), one
    hidden behind a constant ``where(False, ...)`` (kept by JAX, removed by XLA)."""
    w = jax.random.normal(jax.random.key(3), (256, 256), jnp.float32)
    x = jax.random.normal(jax.random.key(4), (64, 256), jnp.float32)

    def f(w, x):
        unused = jnp.cos(x @ w.T)  # never used
        del unused
        masked = jnp.sum(jnp.sin(x @ w))  # used only under a constant-false select
        live = jnp.sum(jnp.tanh(x @ w))
        return jnp.where(False, masked, live)

    jaxpr = str(jax.make_jaxpr(f)(w, x))
    lowered = jax.jit(f).lower(w, x)
    before = lowered.as_text(dialect="hlo")
    compiled = lowered.compile()
    after = compiled.as_text()
    (out / "dead_value_jaxpr.txt").write_text(jaxpr + "\n")
    (out / "dead_value_hlo_before.txt").write_text(before)
    (out / "dead_value_hlo_after.txt").write_text(after)

    def count(text: str, op: str) -> int:
        return len(re.findall(rf"\b{op}\b", text))

    flops_before = float((lambda c: (c[0] if isinstance(c, list) else c)["flops"])(
        lowered.cost_analysis()))  # fmt: skip
    flops_after = float((lambda c: (c[0] if isinstance(c, list) else c)["flops"])(
        compiled.cost_analysis()))  # fmt: skip
    return {
        "cos_in_jaxpr": count(jaxpr, "cos"),
        "cos_in_hlo_before_xla": count(before, "cosine"),
        "cos_in_hlo_after_xla": count(after, "cosine"),
        "sin_in_jaxpr": count(jaxpr, "sin"),
        "sin_in_hlo_before_xla": count(before, "sine"),
        "sin_in_hlo_after_xla": count(after, "sine"),
        "flops_before_xla": flops_before,
        "flops_after_xla": flops_after,
    }


# --------------------------------------------------------------------------- the neuron

# The slides' sigmoid neuron, staged as gates: (name, label, inputs, op).
GATES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("m0", "*", ("w0", "x0"), "mul"),
    ("m1", "*", ("w1", "x1"), "mul"),
    ("a0", "+", ("m0", "m1"), "add"),
    ("a1", "+", ("a0", "w2"), "add"),
    ("n", "*-1", ("a1",), "neg"),
    ("e", "exp", ("n",), "exp"),
    ("p", "+1", ("e",), "plus1"),
    ("out", "1/x", ("p",), "inv"),
)
_OPS = {
    "mul": lambda a, b: a * b,
    "add": lambda a, b: a + b,
    "neg": lambda a: -a,
    "exp": jnp.exp,
    "plus1": lambda a: a + 1.0,
    "inv": lambda a: 1.0 / a,
}


def neuron_values_and_grads(inputs: dict[str, float]) -> tuple[dict, dict]:
    """Forward value of every node, and d out / d node for every node, by ``jax.grad``.

    Each node gets a zero ``bump`` added to its value; the gradient of the output w.r.t.
    the bumps is the gradient flowing into each node (one backward pass for all).
    """
    names = list(inputs) + [g[0] for g in GATES]

    def forward(bumps: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        v = {k: jnp.float32(val) + bumps[k] for k, val in inputs.items()}
        for name, _, args, op in GATES:
            v[name] = _OPS[op](*(v[a] for a in args)) + bumps[name]
        return v["out"], v

    zeros = {k: jnp.float32(0.0) for k in names}
    grads, values = jax.grad(forward, has_aux=True)(zeros)
    return {k: float(v) for k, v in values.items()}, {k: float(g) for k, g in grads.items()}


_LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"}


def draw_neuron(values: dict[str, float], grads: dict[str, float]) -> Any:
    """The computational graph with values (green, above) and gradients (red, below)."""
    pos = {
        "w0": (0, 4), "x0": (0, 3), "w1": (0, 2), "x1": (0, 1), "w2": (0, 0),
        "m0": (1.7, 3.5), "m1": (1.7, 1.5), "a0": (3.2, 2.5), "a1": (4.6, 1.6),
        "n": (5.9, 1.6), "e": (7.1, 1.6), "p": (8.3, 1.6), "out": (9.5, 1.6),
    }  # fmt: skip
    labels = {g[0]: g[1] for g in GATES}
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for name, _, args, _ in GATES:
        for a in args:
            (x0, y0), (x1, y1) = pos[a], pos[name]
            ax.annotate("", xy=(x1 - 0.25, y1), xytext=(x0 + 0.25, y0),
                        arrowprops={"arrowstyle": "->", "color": "0.4"})  # fmt: skip
            t = 0.3 if a in NEURON_INPUTS else 0.5  # inputs converge: label near the source
            mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            # On a white box: the arrow must not hide a minus sign.
            ax.text(mx, my + 0.13, f"{values[a]:.2f}", color="tab:green", ha="center", fontsize=9,
                    bbox=_LABEL_BOX, zorder=3)  # fmt: skip
            ax.text(mx, my - 0.28, f"{grads[a]:.2f}", color="tab:red", ha="center", fontsize=9,
                    bbox=_LABEL_BOX, zorder=3)  # fmt: skip
    x_out, y_out = pos["out"]
    ax.annotate("", xy=(x_out + 1.0, y_out), xytext=(x_out + 0.25, y_out),
                arrowprops={"arrowstyle": "->", "color": "0.4"})  # fmt: skip
    ax.text(x_out + 0.62, y_out + 0.13, f"{values['out']:.2f}", color="tab:green", ha="center")
    ax.text(x_out + 0.62, y_out - 0.28, f"{grads['out']:.2f}", color="tab:red", ha="center")
    for name, (x, y) in pos.items():
        if name in labels:
            ax.add_patch(plt.Circle((x, y), 0.25, fc="white", ec="k"))
            ax.text(x, y, labels[name], ha="center", va="center", fontsize=9)
        else:
            ax.text(x - 0.05, y, name, ha="right", va="center", fontsize=11)
    ax.set_xlim(-0.6, 10.8)
    ax.set_ylim(-0.6, 4.5)
    ax.axis("off")
    ax.set_title(
        "sigmoid neuron 1/(1+exp(-(w0 x0 + w1 x1 + w2))): forward values (green, above), "
        "gradients d out/d value (red, below), all from jax.grad",
        fontsize=9,
    )
    return fig


def pytorch_example() -> dict[str, Any]:
    """The slides' autograd example in JAX: ``y = x - 2; z = 3 y^2; out = mean(z)``."""
    x = jnp.ones((2, 2), jnp.float32)

    def out_fn(x: jax.Array) -> jax.Array:
        y = x - 2
        z = 3 * y * y
        return jnp.mean(z)

    return {"x": x, "out": float(out_fn(x)), "d_out_d_x": jax.grad(out_fn)(x)}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment; write ``metrics.json``, the text artifacts and figures."""
    args = cli.start(NAME, __doc__ or NAME, argv).args
    timer = records.Timer()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch = 100
    config = {"quick": args.quick, "seed": args.seed, "model": "784-200-tanh-10, SGD step",
              "batch": batch, "neuron": NEURON_INPUTS}  # fmt: skip

    step = mlp_step_artifacts(out, batch)
    dead = dead_value_demo(out)
    values, grads = neuron_values_and_grads(NEURON_INPUTS)
    # The sigmoid gate grouped: local gradient s (1 - s) times the upstream gradient 1.
    s = values["out"]
    z = values["a1"]
    local = float(jax.grad(jax.nn.sigmoid)(jnp.float32(z)))
    by_hand = {
        "w0": s * (1 - s) * NEURON_INPUTS["x0"],
        "x0": s * (1 - s) * NEURON_INPUTS["w0"],
        "w1": s * (1 - s) * NEURON_INPUTS["x1"],
        "x1": s * (1 - s) * NEURON_INPUTS["w1"],
        "w2": s * (1 - s),
    }
    chain_err = max(abs(by_hand[k] - grads[k]) for k in by_hand)
    torch_ex = pytorch_example()
    print(
        f"[{NAME}] sigmoid neuron: out {s:.4f}; grads "
        + ", ".join(f"{k} {grads[k]:.4f}" for k in NEURON_INPUTS)
        + f"; s(1-s) = {s * (1 - s):.4f}, jax.grad(sigmoid) = {local:.4f}"
    )
    print(
        f"[{NAME}] step: jaxpr {step['jaxpr_loss_eqns']} eqns (loss) -> "
        f"{step['jaxpr_grad_eqns']} (grad); HLO {step['hlo_before_instructions']} instructions "
        f"before XLA -> {step['hlo_after_entry_instructions']} in the entry after, "
        f"{step['hlo_after_fusions']} fusions"
    )
    print(f"[{NAME}] dead values: {dead}")

    figures = [plotting.save_figure(draw_neuron(values, grads), out, "sigmoid_neuron_graph.png")]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2), layout="constrained")
    bars = {
        "jaxpr\nloss": step["jaxpr_loss_eqns"],
        "jaxpr\ngrad": step["jaxpr_grad_eqns"],
        "HLO step\nbefore XLA": step["hlo_before_instructions"],
        "HLO step\nafter (entry)": step["hlo_after_entry_instructions"],
    }
    axes[0].bar(list(bars), list(bars.values()), color=["tab:blue"] * 2 + ["tab:orange"] * 2)
    axes[0].set_ylabel("operations")
    axes[0].tick_params(axis="x", labelsize=7)
    axes[0].set_title(f"{step['hlo_after_fusions']} fusions after XLA", fontsize=9)
    mem = step["memory"]
    memd = step["memory_donated"]
    # What the step allocates beyond its inputs: output buffers not aliased to an input,
    # and temporaries. Donation removes the first; XLA then plans more of the second.
    variants = {"no donation": mem, "params donated": memd}
    new_out = [m.get("output_size_in_bytes", 0) - m.get("alias_size_in_bytes", 0)
               for m in variants.values()]  # fmt: skip
    temp = [m.get("temp_size_in_bytes", 0) for m in variants.values()]
    xs = np.arange(len(variants))
    axes[1].bar(xs, np.asarray(new_out) / 1e3, 0.5, label="new output buffers")
    axes[1].bar(xs, np.asarray(temp) / 1e3, 0.5, bottom=np.asarray(new_out) / 1e3,
                label="temporaries")  # fmt: skip
    axes[1].set_xticks(xs, list(variants), fontsize=8)
    axes[1].set_ylabel("KB allocated by the step")
    axes[1].set_ylim(0, 1.4 * max(n + t for n, t in zip(new_out, temp, strict=True)) / 1e3)
    axes[1].legend(fontsize=7, loc="upper right")
    axes[1].set_title(
        f"donation aliases {memd.get('alias_size_in_bytes', 0) / 1e3:.0f} KB of outputs to the "
        f"params;\ntotal {(new_out[0] + temp[0]) / 1e3:.0f} KB -> "
        f"{(new_out[1] + temp[1]) / 1e3:.0f} KB (compiled.memory_analysis())",
        fontsize=8,
    )
    figures.append(plotting.save_figure(fig, out, "graph_compiler.png"))

    claims = [
        claim_row(
            "sigmoid_local_gradient",
            f"out = {s:.4f}; jax.grad gives d/dw0..w2 = "
            + ", ".join(f"{grads[k]:.3f}" for k in ("w0", "x0", "w1", "x1", "w2"))
            + f"; the grouped gate s(1-s) = {s * (1 - s):.4f} (jax.grad(sigmoid): {local:.4f}) "
            f"times the inputs gives the same to {chain_err:.1e}",
            "reproduced"
            if chain_err < 1e-6 and abs(local - s * (1 - s)) < 1e-6
            else "not reproduced",
        ),
        claim_row(
            "graph_optimizations",
            f"grad jaxpr built from the {step['jaxpr_loss_eqns']}-eqn forward jaxpr: "
            f"{step['jaxpr_grad_eqns']} eqns; XLA turns {step['hlo_before_instructions']} HLO "
            f"instructions into {step['hlo_after_entry_instructions']} top-level ops "
            f"({step['hlo_after_fusions']} fusions); unused cos: {dead['cos_in_jaxpr']} in the "
            f"jaxpr, {dead['cos_in_hlo_before_xla']} in the HLO (JAX's DCE); masked sin: "
            f"{dead['sin_in_hlo_before_xla']} before XLA, {dead['sin_in_hlo_after_xla']} after; "
            f"donating the params aliases {memd.get('alias_size_in_bytes', 0):,} bytes "
            f"(memory planning)",
            "reproduced"
            if dead["cos_in_hlo_after_xla"] == 0
            and dead["sin_in_hlo_after_xla"] == 0
            and dead["sin_in_hlo_before_xla"] > 0
            and step["hlo_after_fusions"] > 0
            and memd.get("alias_size_in_bytes", 0) > 0
            else "partly",
        ),
    ]
    metrics = {
        "step": step,
        "dead_value": dead,
        "neuron": {"values": values, "grads": grads, "sigmoid_local_grad": local,
                   "s_times_1_minus_s": s * (1 - s), "chain_rule_max_abs_error": chain_err},
        "pytorch_autograd_example": torch_ex,
    }  # fmt: skip
    return records.write_metrics(
        out, config, metrics, {"used": [{"dataset": "random inputs"}], "skipped": []}, timer(),
        name=NAME, claims=claims, figures=figures,
        headline=[f"graph: {claims[1]['result']}"],
    )  # fmt: skip


if __name__ == "__main__":
    cli.main(main)
