"""One SGD training epoch of the dense models in every framework, written idiomatically.

Each ``*_epoch(spec, x, y, batch_size, lr)`` factory returns a zero-argument closure that
trains ONE epoch (a fresh shuffle, then ``N // batch_size`` steps of SGD on the mean
softmax cross-entropy) and returns something to block on; the closure keeps its params
between calls. Optional peers (torch, flax, equinox, haiku) are imported inside their
factory: :data:`OPTIONAL` names the module each needs, so callers can skip them.

JAX peers share one data path: the data live on the device, each epoch draws a
permutation there, and each step gathers its batch ``x[perm[i]]`` inside the compiled
step (one dispatch per step in the loops, none in the scan). Gathering the whole
shuffled epoch at once instead costs a fresh 188 MB buffer per epoch, paid in page
faults.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks.workloads import DenseSpec, init_dense

__all__ = ["FACTORIES", "OPTIONAL", "TORCH_THREADS"]

TORCH_THREADS = 2
EpochFn = Callable[[], Any]


def _ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over integer labels."""
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def _dense_apply(layers: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = jnp.tanh(x)
    return x


def _jax_params(spec: DenseSpec) -> list[tuple[jax.Array, jax.Array]]:
    return [(jnp.asarray(w), jnp.asarray(b)) for w, b in init_dense(spec)]


def _permuter(n: int, batch_size: int) -> Callable[[jax.Array], jax.Array]:
    """Jitted: a fresh permutation of ``n`` as ``(steps, B)`` rows of example indices."""
    steps = n // batch_size
    return jax.jit(
        lambda key: jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, -1)
    )


def _jax_loop(
    x: np.ndarray, y: np.ndarray, batch_size: int, state: Any, step: Callable[..., Any]
) -> EpochFn:
    """A Python loop of ``state = step(state, x, y, rows, i)`` over a shuffled epoch.

    ``rows`` is the epoch's ``(steps, B)`` permutation; the step gathers its batch
    ``x[rows[i]]`` itself, on the device.
    """
    xd, yd = jax.device_put(x), jax.device_put(y)
    permute = _permuter(x.shape[0], batch_size)
    # Step indices as 0-d arrays: a Python int would be static under eqx.filter_jit
    # (one compile per step) and is converted on every call under jax.jit.
    indices = [np.asarray(i, np.int32) for i in range(x.shape[0] // batch_size)]
    box: dict[str, Any] = {"state": state, "key": jax.random.key(1)}

    def epoch():
        box["key"], k = jax.random.split(box["key"])
        rows = permute(k)
        s = box["state"]
        for i in indices:
            s = step(s, xd, yd, rows, i)
        box["state"] = s
        return s

    return epoch


def jit_loop_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """Hand-written ``jax.jit`` SGD step (plain pytree params) in a Python loop."""

    @partial(jax.jit, donate_argnums=0)
    def step(params, x, y, rows, i):
        xb, yb = x[rows[i]], y[rows[i]]
        grads = jax.grad(lambda p: _ce(_dense_apply(p, xb), yb))(params)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads)

    return _jax_loop(x, y, batch_size, _jax_params(spec), step)


def scan_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """The whole epoch (shuffle and every step) as one ``jax.jit`` with ``lax.scan``."""
    xd, yd = jax.device_put(x), jax.device_put(y)
    steps = x.shape[0] // batch_size

    @partial(jax.jit, donate_argnums=0)
    def run(params, x, y, key):
        rows = jax.random.permutation(key, x.shape[0])[: steps * batch_size]

        def body(p, idx):
            xb, yb = x[idx], y[idx]
            grads = jax.grad(lambda q: _ce(_dense_apply(q, xb), yb))(p)
            return jax.tree.map(lambda a, g: a - lr * g, p, grads), None

        return lax.scan(body, params, rows.reshape(steps, batch_size))[0]

    box: dict[str, Any] = {"params": _jax_params(spec), "key": jax.random.key(1)}

    def epoch():
        box["key"], k = jax.random.split(box["key"])
        box["params"] = run(box["params"], xd, yd, k)
        return box["params"]

    return epoch


def flax_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """Flax linen module, optax SGD, jitted step in a Python loop."""
    from flax import linen as nn

    sizes = spec.sizes[1:]

    class Net(nn.Module):
        @nn.compact
        def __call__(self, h):
            for i, d in enumerate(sizes):
                h = nn.Dense(d)(h)
                if i < len(sizes) - 1:
                    h = jnp.tanh(h)
            return h

    net: Any = Net()
    params = net.init(jax.random.key(0), jnp.zeros((1, spec.sizes[0])))
    opt = optax.sgd(lr)

    @partial(jax.jit, donate_argnums=0)
    def step(state, x, y, rows, i):
        params, opt_state = state
        xb, yb = x[rows[i]], y[rows[i]]
        grads = jax.grad(lambda p: _ce(net.apply(p, xb), yb))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return _jax_loop(x, y, batch_size, (params, opt.init(params)), step)


def equinox_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """Equinox module (``eqx.nn.MLP`` / ``eqx.nn.Linear``), optax SGD, ``eqx.filter_jit``."""
    import equinox as eqx

    key = jax.random.key(0)
    if len(spec.sizes) == 2:
        model: Any = eqx.nn.Linear(spec.sizes[0], spec.sizes[1], key=key)
    else:
        model = eqx.nn.MLP(
            spec.sizes[0], spec.sizes[-1], spec.sizes[1], len(spec.sizes) - 2,
            activation=jnp.tanh, key=key,
        )  # fmt: skip
    opt = optax.sgd(lr)

    def loss(m, xb, yb):
        return _ce(jax.vmap(m)(xb), yb)

    @eqx.filter_jit  # donate="all" would also donate the data
    def step(state, x, y, rows, i):
        m, opt_state = state
        grads = eqx.filter_grad(loss)(m, x[rows[i]], y[rows[i]])
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(m, eqx.is_array))
        return eqx.apply_updates(m, updates), opt_state

    state = (model, opt.init(eqx.filter(model, eqx.is_array)))
    return _jax_loop(x, y, batch_size, state, step)


def haiku_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """Haiku ``hk.nets.MLP`` / ``hk.Linear`` under ``hk.transform``, optax SGD, jitted step."""
    import haiku as hk

    sizes = list(spec.sizes[1:])

    def forward(h):
        if len(sizes) == 1:
            return hk.Linear(sizes[0])(h)
        return hk.nets.MLP(sizes, activation=jnp.tanh)(h)

    net: Any = hk.without_apply_rng(hk.transform(forward))
    params = net.init(jax.random.key(0), jnp.zeros((1, spec.sizes[0])))
    opt = optax.sgd(lr)

    @partial(jax.jit, donate_argnums=0)
    def step(state, x, y, rows, i):
        params, opt_state = state
        xb, yb = x[rows[i]], y[rows[i]]
        grads = jax.grad(lambda p: _ce(net.apply(p, xb), yb))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return _jax_loop(x, y, batch_size, (params, opt.init(params)), step)


def torch_dense(spec: DenseSpec) -> Any:
    """The dense model as a ``torch.nn.Sequential`` with the shared initial weights."""
    import torch

    mods: list[Any] = []
    layers = init_dense(spec)
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(torch.nn.Tanh())
    return torch.nn.Sequential(*mods)


def torch_epoch(spec: DenseSpec, x, y, batch_size: int, lr: float) -> EpochFn:
    """PyTorch eager, ``torch.optim.SGD``, ``torch.set_num_threads(2)``."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    model = torch_dense(spec)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    n, steps = x.shape[0], x.shape[0] // batch_size
    gen = torch.Generator().manual_seed(1)
    loss_fn = torch.nn.functional.cross_entropy

    def epoch():
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        return None

    return epoch


def fnet_fit_epoch(
    spec: DenseSpec, x, y, batch_size: int, lr: float, epoch_times: list[float] | None = None
) -> EpochFn:
    """``fnet.train.fit(..., epochs=1)``: the public API, as a user calls it.

    ``epoch_times`` (optional) collects ``history["epoch_time"]``: the compiled epoch
    alone, without ``fit``'s per-call setup.
    """
    import fnet
    from fnet.train import fit, supervised

    if len(spec.sizes) == 2:
        model = fnet.models.linear(spec.sizes[-1])
    else:
        model = fnet.models.mlp(list(spec.sizes[1:-1]), spec.sizes[-1], "tanh")
    objective = supervised(model, fnet.losses.softmax_cross_entropy)
    _, params = model.init(jax.random.key(0), (-1, spec.sizes[0]))
    opt = optax.sgd(lr)
    xd, yd = jax.device_put(x), jax.device_put(y)
    box: dict[str, Any] = {"params": params, "epoch": 0}

    def epoch():
        box["epoch"] += 1
        result = fit(
            objective, box["params"], opt, xd, yd, key=jax.random.key(box["epoch"]),
            epochs=1, batch_size=batch_size, progress=False,
        )  # fmt: skip
        box["params"] = result.params
        if epoch_times is not None:
            epoch_times.append(result.history["epoch_time"][0])
        return result.params

    return epoch


FACTORIES: dict[str, Callable[..., EpochFn]] = {
    "fnet.fit": fnet_fit_epoch,
    "jax.lax.scan epoch": scan_epoch,
    "jax.jit loop": jit_loop_epoch,
    "PyTorch eager": torch_epoch,
    "Flax linen": flax_epoch,
    "Equinox": equinox_epoch,
    "Haiku": haiku_epoch,
}

OPTIONAL: dict[str, str] = {
    "PyTorch eager": "torch",
    "Flax linen": "flax",
    "Equinox": "equinox",
    "Haiku": "haiku",
}
