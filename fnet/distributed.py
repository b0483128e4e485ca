"""Data parallelism on one or many devices and hosts, through ``jax.sharding``.

(Named ``fnet.distributed`` because ``fnet.parallel`` is the parallel-branches combinator.)

fnet's model of parallel training is plain SPMD data parallelism expressed with JAX's own
machinery (no parameter server, no ``pmap``):

* a :class:`jax.sharding.Mesh` with a ``"data"`` axis (and optionally a ``"model"`` axis);
* every batch is split along its leading axis over ``"data"``
  (``NamedSharding(mesh, P("data"))``);
* params, model state and optimizer state are replicated, or, on a mesh with a
  ``"model"`` axis, large matrices are split over it (:func:`param_shardings`);
* the train step is one ``jax.jit`` computation; XLA inserts the gradient all-reduce.

This module is a leaf (meshes, placement, multi-host helpers; no other fnet import): the
sharded training lives in ``fnet.train`` (``fit(..., mesh=mesh)``,
``train_step(..., mesh=mesh)``), the sharded per-example statistics in
``fnet.per_example`` (``stats(..., mesh=mesh)``, ``norms(..., mesh=mesh)``). Placement
helpers take ``(tree, mesh)``; every other function takes ``mesh=`` as a keyword.
The same code runs on 1 CPU, 8 GPUs or a TPU pod. Multi-host: :func:`initialize` on
every process, each process loads its own slice of the data (:func:`host_shard`), and
:func:`global_batch` assembles the global array with
``jax.make_array_from_process_local_data``. See ``docs/parallel.md``.

Meshes use ``AxisType.Auto`` axes (sharding decided by the compiler from the constraints
fnet places); a mesh with ``Explicit`` axes is converted (:func:`as_auto`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnet._checks import check_int

__all__ = [
    "DATA_AXIS",
    "MIN_SHARD_SIZE",
    "MODEL_AXIS",
    "as_auto",
    "batch_sharding",
    "check_divisible",
    "constrain_batch",
    "data_axis",
    "data_mesh",
    "data_size",
    "global_batch",
    "host_shard",
    "initialize",
    "model_axis",
    "param_shardings",
    "place",
    "place_data",
    "replicate",
    "replicated",
    "shard_batch",
    "shard_examples",
]

DATA_AXIS = "data"
MODEL_AXIS = "model"
MIN_SHARD_SIZE = 2**14
"""Default: matrices with at least this many elements are split over the model axis."""

PyTree = Any


# --------------------------------------------------------------------------- meshes


def data_mesh(
    n_devices: int | None = None,
    *,
    model: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh for data parallelism: axes ``("data",)``, or ``("data", "model")``.

    Args:
      n_devices: how many devices to use (default: all of ``devices``).
      model: size of the ``"model"`` axis; 1 (default) gives a 1-D ``("data",)`` mesh,
        ``k > 1`` a ``(n_devices // k, k)`` mesh whose large matrices are split ``k`` ways.
      devices: the devices (default ``jax.devices()``: every device of every process).

    Returns:
      A :class:`jax.sharding.Mesh` with ``AxisType.Auto`` axes, built by
      ``jax.make_mesh`` (which orders devices for fast collectives on TPU/GPU).

    Raises:
      TypeError: ``n_devices`` or ``model`` is not an int (``True`` is not).
      ValueError: ``n_devices`` is not in ``[1, len(devices)]``, or ``model < 1`` or
        does not divide ``n_devices``.
    """
    devs = list(jax.devices() if devices is None else devices)
    n = len(devs) if n_devices is None else n_devices
    n = check_int(n, "data_mesh: n_devices", minimum=1, maximum=len(devs))
    model = check_int(model, "data_mesh: model", minimum=1)
    if n % model:
        raise ValueError(f"data_mesh: model={model} must divide n_devices={n}")
    if model == 1:
        return jax.make_mesh((n,), (DATA_AXIS,), (AxisType.Auto,), devices=devs[:n])
    return jax.make_mesh(
        (n // model, model), (DATA_AXIS, MODEL_AXIS), (AxisType.Auto,) * 2, devices=devs[:n]
    )


def as_auto(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis of type ``AxisType.Auto`` (the same devices and names).

    fnet constrains shardings with ``jax.lax.with_sharding_constraint``, which needs Auto
    axes; ``jax.make_mesh`` makes Explicit axes by default since JAX 0.7.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def data_axis(mesh: Mesh) -> str:
    """The mesh axis batches are split over: ``"data"`` if the mesh has it, else its first."""
    return DATA_AXIS if DATA_AXIS in mesh.axis_names else mesh.axis_names[0]


def model_axis(mesh: Mesh) -> str | None:
    """The ``"model"`` axis if the mesh has one of size > 1, else ``None``."""
    if MODEL_AXIS in mesh.axis_names and mesh.shape[MODEL_AXIS] > 1:
        return MODEL_AXIS
    return None


def data_size(mesh: Mesh) -> int:
    """Number of batch shards: the size of the data axis."""
    return int(mesh.shape[data_axis(mesh)])


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array copied whole onto every device of ``mesh``."""
    return NamedSharding(as_auto(mesh), P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: leading axis split over the data axis, the rest whole."""
    return NamedSharding(as_auto(mesh), P(data_axis(mesh)))


# --------------------------------------------------------------------------- placement


def check_divisible(batch_size: int, mesh: Mesh, *, what: str = "batch_size") -> None:
    """Raise ``ValueError`` unless ``batch_size`` splits evenly over the data axis.

    The message names both numbers and the nearest batch sizes that would work.
    """
    mesh = as_auto(mesh)  # TypeError for anything but a Mesh
    d = data_size(mesh)
    if batch_size % d:
        lo, hi = (batch_size // d) * d, (batch_size // d + 1) * d
        options = f"{lo} or {hi}" if lo else f"{hi}"
        raise ValueError(
            f"{what}={batch_size} is not divisible by the {d} devices of the mesh's "
            f"{data_axis(mesh)!r} axis, so the batch cannot be split evenly; use a "
            f"{what} that is a multiple of {d} (e.g. {options}), or a mesh with fewer "
            "devices."
        )


def _put(a: Any, sharding: NamedSharding) -> jax.Array:
    """``a`` placed with ``sharding``; works when the mesh spans several processes.

    Every process must pass the same (full, global) value.
    """
    if isinstance(a, jax.Array) and a.sharding == sharding:
        return a
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(a), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array leaf of ``tree`` copied onto every device of ``mesh`` (PRNG keys too)."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda a: _put(a, sharding), tree)


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Split every leaf ``(B, ...)`` of ``batch`` over the data axis of ``mesh``.

    For one process holding the whole global batch. (On several hosts, each holding its
    part, use :func:`global_batch`.)

    Raises:
      ValueError: ``B`` is not divisible by the data-axis size, or leaves differ in ``B``.
    """
    sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in jax.tree.leaves(batch)}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"shard_batch: leaves need one shared leading axis, got {sorted(sizes)}")
    check_divisible(sizes.pop(), mesh, what="batch size")
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda a: _put(a, sharding), batch)


def place_data(data: PyTree, mesh: Mesh) -> PyTree:
    """A dataset for ``fit``: every leaf copied to every device of ``mesh``.

    ``fit`` gathers each step's batch from the whole dataset by a random permutation, so
    a full copy per device keeps that gather local; each step's batch is then split over
    the data axis. A leaf that is already a global array spanning several processes
    (:func:`global_batch`) is kept as it is: the gather then crosses devices (XLA inserts
    the collectives), which is correct but moves data every step.
    """

    def one(a: Any) -> Any:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a
        return _put(a, replicated(mesh))

    return jax.tree.map(one, data)


def param_shardings(tree: PyTree, mesh: Mesh, *, min_size: int = MIN_SHARD_SIZE) -> PyTree:
    """A tree of shardings for params or optimizer state (same structure as ``tree``).

    On a mesh without a ``"model"`` axis (or of size 1) everything is replicated. With one
    of size ``k``, every leaf of rank >= 2 with at least ``min_size`` elements whose last
    dimension is divisible by ``k`` is split over ``"model"`` along that last dimension
    (a Dense ``w`` of shape ``(in, out)`` by output units); all else is replicated. The
    rule depends on shapes only, so optax moment estimates (``mu``, ``nu``) get the same
    shardings as the params they mirror.
    """
    mesh = as_auto(mesh)
    axis = model_axis(mesh)
    k = int(mesh.shape[axis]) if axis else 1

    def one(a: Any) -> NamedSharding:
        shape = np.shape(a)
        if axis and len(shape) >= 2 and math.prod(shape) >= min_size and shape[-1] % k == 0:
            return NamedSharding(mesh, P(*([None] * (len(shape) - 1)), axis))
        return NamedSharding(mesh, P())

    return jax.tree.map(one, tree)


def place(tree: PyTree, mesh: Mesh, *, min_size: int = MIN_SHARD_SIZE) -> PyTree:
    """Put params / optimizer state on ``mesh`` with :func:`param_shardings`."""
    return jax.tree.map(_put, tree, param_shardings(tree, mesh, min_size=min_size))


def constrain_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Inside ``jax.jit``: require every leaf of ``batch`` to be split over the data axis.

    ``jax.lax.with_sharding_constraint(leaf, P("data"))``; a leading size not divisible by
    the data-axis size is allowed here (XLA pads), callers check the main batch size.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), batch)


# --------------------------------------------------------------------------- multi-host


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs: Any,
) -> None:
    """Join a multi-process JAX job: ``jax.distributed.initialize`` on every process.

    Call once per process, before any other JAX call. With no arguments JAX detects the
    cluster (Cloud TPU, SLURM, Open MPI, Kubernetes); elsewhere pass
    ``coordinator_address="host0:1234"``, ``num_processes`` and this ``process_id``.
    Does nothing when ``num_processes == 1``, when JAX is already initialized, or when no
    argument is given and no cluster environment is detected, so a script runs unchanged
    on one machine. Other keyword arguments go to ``jax.distributed.initialize``
    (e.g. ``local_device_ids``).
    """
    if num_processes == 1 or jax.distributed.is_initialized():
        return
    if coordinator_address is None and num_processes is None and process_id is None:
        if not _cluster_detected():
            return
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)


def _cluster_detected() -> bool:
    """Whether JAX's auto-detection would find a cluster (TPU pod, SLURM, MPI, k8s)."""
    try:  # private API, used only to make the no-argument call a no-op on a laptop
        from jax._src.clusters import ClusterEnv

        return any(env.is_env_present() for env in ClusterEnv._cluster_types)
    except (ImportError, AttributeError):  # if it moves, let jax.distributed decide
        return True


def host_shard(x: Any, process_index: int | None = None, process_count: int | None = None) -> Any:
    """This process's contiguous slice of the leading axis of every leaf of ``x``.

    Process ``i`` of ``p`` gets rows ``[i * N/p, (i+1) * N/p)``: the layout
    :func:`global_batch` expects. Defaults: ``jax.process_index()``,
    ``jax.process_count()``. Use it to pick which rows (or files) a host loads.

    Raises:
      ValueError: ``N`` is not divisible by the process count.
    """
    i = jax.process_index() if process_index is None else process_index
    p = jax.process_count() if process_count is None else process_count
    if not 0 <= i < p:
        raise ValueError(f"host_shard: process_index={i} not in [0, {p})")

    def one(a: Any) -> Any:
        n = np.shape(a)[0]
        if n % p:
            raise ValueError(
                f"host_shard: {n} rows are not divisible by {p} processes; drop or pad "
                f"to a multiple of {p}"
            )
        per = n // p
        return a[i * per : (i + 1) * per]

    return jax.tree.map(one, x)


def global_batch(local_batch: PyTree, mesh: Mesh) -> PyTree:
    """Assemble the global batch from each process's local rows.

    Every process passes its own ``(B / process_count, ...)`` rows (in process order,
    :func:`host_shard`); the result is a global ``jax.Array`` of shape ``(B, ...)`` split
    over the data axis, built with ``jax.make_array_from_process_local_data``. On one
    process it is :func:`shard_batch`.

    Raises:
      ValueError: the global batch size is not divisible by the data-axis size.
    """
    sharding = batch_sharding(mesh)

    def one(a: Any) -> jax.Array:
        a = np.asarray(a)
        check_divisible(a.shape[0] * jax.process_count(), mesh, what="global batch size")
        return jax.make_array_from_process_local_data(sharding, a)

    return jax.tree.map(one, local_batch)


# --------------------------------------------------------------------------- examples


def shard_examples(data: PyTree, replicated_trees: PyTree, mesh: Mesh) -> tuple[PyTree, PyTree]:
    """Place a dataset for a computation over examples: ``(data, replicated_trees)``.

    Every leaf of ``data`` (``(N, ...)``, ``N`` divisible by the data-axis size) is split
    over the data axis (:func:`shard_batch`), unless all of them are already global arrays
    spanning several processes (:func:`global_batch`), which are kept; every array leaf of
    ``replicated_trees`` (params, state, keys; ``None`` leaves stay ``None``) is copied
    to every device. ``fnet.per_example``'s ``mesh=`` option uses it.

    Raises:
      ValueError: ``N`` is not divisible by the data-axis size.
    """
    leaves = jax.tree.leaves(data)
    if not all(isinstance(a, jax.Array) and not a.is_fully_addressable for a in leaves):
        data = shard_batch(data, mesh)
    return data, replicate(replicated_trees, mesh)
