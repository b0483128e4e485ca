"""fnet's benchmark suite: ``python -m benchmarks [--quick] [--only NAME[,NAME]] [--out DIR]``.

Each benchmark is a module here with ``run(quick: bool) -> list[dict]`` (rows of one
Markdown table). :data:`BENCHMARKS` lists them in the order they run; a module that is not
there (or whose import fails for a missing optional package) is skipped with a note.
Results: ``docs/performance.md``.
"""

BENCHMARKS: dict[str, str] = {
    "roofs": "the machine's roofs: GEMM GFLOP/s, memory bandwidth, page-fault cost, jit dispatch",
    "training": "training throughput of one epoch, fnet vs NumPy/JAX/PyTorch/Flax/Equinox/Haiku",
    "train_throughput": "fnet.train throughput (owned by fnet.train)",
    "per_example_peers": "per-example grads/norms/stats vs the batch gradient, fnet/JAX/torch",
    "per_example": "fnet.per_example benchmarks (owned by fnet.per_example)",
    "dispatch": "per-step overhead of a tiny model and compile times, fnet vs raw jax.jit",
    "engine": "fit's fixed cost per call, MLP/Linear/convnet fit vs peers (issue 10 targets)",
    "convnet": "the AlexNet-style convnet's training throughput, fnet vs PyTorch eager",
    "memory": "peak RSS of fnet.per_example.stats as N grows (streaming check)",
    "scaling": "data-parallel strong scaling of fit(mesh=) on 1/2/4/8 devices",
}
