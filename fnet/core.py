"""The model contract: a model is a named pair of pure functions, ``init`` and ``apply``.

``Model`` (stateless)::

    output_shape, params = model.init(key, input_shape)
    y = model.apply(params, x, *, key=None, train=False)

``StatefulModel`` (a model with non-trainable state, e.g. BatchNorm's running
statistics; see ``docs/design.md`` for why state is a separate pytree)::

    output_shape, params, state = model.init(key, input_shape)
    y, new_state = model.apply(params, state, x, *, key=None, train=False)

``params`` and ``state`` are plain nested dicts of arrays, keyed by readable layer names
(``params["dense_0"]["w"]``), so ``jax.tree``, optax and checkpointing work on them
directly. ``input_shape`` includes the leading batch dimension, which may be ``-1``.
Both classes unpack like a pair: ``init, apply = model``.

Initialization keys are derived from each layer's name (:func:`layer_key`), never from
its position, so inserting a layer leaves the initial values of every other layer
bit-identical.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from fnet import initializers
from fnet.errors import ShapeError

__all__ = [
    "AnyModel",
    "Model",
    "Params",
    "Shape",
    "State",
    "StatefulModel",
    "as_stateful",
    "describe",
    "describe_initializer",
    "is_stateful",
    "layer_key",
]

Params: TypeAlias = dict[str, Any]
State: TypeAlias = dict[str, Any]
Shape: TypeAlias = tuple[int, ...]
InitFn: TypeAlias = Callable[..., tuple[Any, ...]]
ApplyFn: TypeAlias = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class _Pair:
    """Fields shared by both kinds of model; unpacks like ``(init, apply)``."""

    init: InitFn
    apply: ApplyFn
    name: str = "model"
    children: tuple[tuple[str, AnyModel], ...] = ()
    kind: str = ""
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        """Unpack like a pair: ``init, apply = model``."""
        return iter((self.init, self.apply))


@dataclasses.dataclass(frozen=True)
class Model(_Pair):
    """A stateless model: a named pair of pure functions ``(init, apply)``.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params)``; ``key`` a JAX PRNG key,
        ``input_shape`` a tuple with a leading batch dimension (``-1`` allowed).
      apply: ``apply(params, x, *, key=None, train=False) -> y``; ``key`` is needed only
        by layers that use randomness when ``train=True`` (Dropout).
      name: the default name combinators give this layer (``"dense"`` -> ``"dense_0"``).
      children: ``(name, model)`` pairs of a combinator's sub-models, for ``summary``.
      kind: the constructor that built it (``"Dense"``, ``"serial"``), so tools that
        specialise on structure (the per-example dense-layer trick, ``summary``) can ask
        instead of guessing; ``name`` may be anything the user chose.
      config: the constructor's arguments as a JSON-able mapping (``{"out_dim": 10,
        "w_init": "glorot_normal", ...}``), children excluded; :func:`describe` nests it.
    """


@dataclasses.dataclass(frozen=True)
class StatefulModel(_Pair):
    """A model with explicit non-trainable state (running statistics).

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params, state)``.
      apply: ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``;
        the state changes only when ``train=True``.
      name: the default name combinators give this layer.
      children: ``(name, model)`` pairs of a combinator's sub-models.
      kind: the constructor that built it (``"BatchNorm"``, ``"serial"``).
      config: the constructor's arguments as a JSON-able mapping (see :class:`Model`).
    """


AnyModel: TypeAlias = Model | StatefulModel


def is_stateful(model: AnyModel) -> bool:
    """True if ``model`` carries state (its ``apply`` takes and returns a state pytree)."""
    if isinstance(model, StatefulModel):
        return True
    if isinstance(model, Model):
        return False
    raise TypeError(f"expected an fnet Model or StatefulModel, got {type(model).__name__}")


def as_stateful(model: AnyModel) -> StatefulModel:
    """View any model as a :class:`StatefulModel` (a stateless one gets empty state ``{}``).

    Lets code that handles both kinds (combinators, ``fnet.train``) be written once.
    """
    if is_stateful(model):
        return model  # type: ignore[return-value]

    def init(key, input_shape):
        output_shape, params = model.init(key, input_shape)
        return output_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        return model.apply(params, x, key=key, train=train), state

    return StatefulModel(init, apply, model.name, model.children, model.kind, model.config)


def describe(model: AnyModel) -> dict[str, Any]:
    """A JSON-able description of a model's structure: kinds, configuration and children.

    Two models with the same description compute the same function of the same params
    (up to user-supplied callables, which are named, not compared); two models whose
    layers differ in kind or configuration (``Relu`` vs ``Tanh``, ``Dropout(0.1)`` vs
    ``Dropout(0.5)``) get different descriptions even when every shape agrees, so a
    checkpoint can record it and refuse a mismatched model.

    Returns:
      ``{"kind": str, "name": str, "stateful": bool, "config": {...}, "children":
      [{"child": child_name, **describe(child)}, ...]}``; ``children`` is empty for a
      layer. Every value is a str, int, float, bool, None, list or dict
      (``json.dumps`` accepts it; ``sort_keys=True`` gives a stable fingerprint).

    Raises:
      TypeError: ``model`` is not an fnet model.
    """
    stateful = is_stateful(model)
    return {
        "kind": model.kind,
        "name": model.name,
        "stateful": stateful,
        "config": _jsonable(dict(model.config)),
        "children": [
            {"child": child_name, **describe(child)} for child_name, child in model.children
        ],
    }


def describe_initializer(init: Any) -> str:
    """How :func:`describe` names an initializer: its registered name, else ``callable:<qualname>``.

    A string is returned as is (``"he_normal"``); a function registered in
    ``fnet.initializers`` under a name gets that name; any other callable is named
    ``"callable:<module>.<qualname>"`` (e.g. ``"callable:fnet.initializers.normal.<locals>.init"``
    for ``normal(0.01)``): honest about the code that runs, but silent about values
    captured in a closure, so a description cannot tell ``normal(0.01)`` from
    ``normal(0.1)``. Pass initializers by name where you can.
    """
    if isinstance(init, str):
        return init
    registered = _registered_initializer_name(init)
    if registered is not None:
        return registered
    module = getattr(init, "__module__", None) or type(init).__module__
    qualname = getattr(init, "__qualname__", None) or type(init).__qualname__
    return f"callable:{module}.{qualname}"


def _registered_initializer_name(init: Any) -> str | None:
    for name in initializers.__all__:
        if getattr(initializers, name, None) is init:
            return name
    return None


def _jsonable(value: Any) -> Any:
    """Convert a constructor argument to JSON-able form (dtypes by name, tuples as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.dtype, type)) or hasattr(value, "dtype"):
        try:
            return np.dtype(value).name
        except TypeError:
            pass
    if callable(value):
        return describe_initializer(value)
    return repr(value)


def layer_key(key: jax.Array, name: str) -> jax.Array:
    """Derive a layer's PRNG key from its parent's key and its name (not its position).

    Uses ``jax.random.fold_in`` with the CRC-32 of the name, so the key of
    ``"dense_1"`` does not change when another layer is inserted before it.
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def as_shape(input_shape: Sequence[int], layer: str, min_rank: int = 1) -> Shape:
    """Validate an ``input_shape`` argument and return it as a tuple of ints.

    The leading (batch) dimension may be ``-1``; every other dimension must be positive.
    Raises ``ShapeError`` naming ``layer`` otherwise.
    """
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise TypeError(
            f"{layer}: input_shape must be a tuple of ints such as (-1, 784), got {input_shape!r}"
        ) from None
    if len(shape) < min_rank:
        raise ShapeError(
            f"{layer} needs inputs of rank >= {min_rank} (batch first), got input_shape {shape}"
        )
    if shape and (shape[0] == 0 or shape[0] < -1):
        raise ShapeError(f"{layer}: batch dimension must be positive or -1, got {shape}")
    if any(d <= 0 for d in shape[1:]):
        raise ShapeError(f"{layer}: dimensions after the batch must be positive, got {shape}")
    return shape


def check_input(x: Any, layer: str, *, rank: int | None = None, last: int | None = None) -> None:
    """Raise ``ShapeError`` if ``x`` does not have ``rank`` dims or last dimension ``last``.

    Shapes are static under ``jax.jit``, so this check costs nothing at run time.
    """
    shape = np.shape(x)
    if rank is not None and len(shape) != rank:
        raise ShapeError(f"{layer} expects inputs of rank {rank}, got shape {shape}")
    if last is not None and (len(shape) == 0 or shape[-1] != last):
        raise ShapeError(
            f"{layer} expects inputs with last dimension {last} (set by init), got shape {shape}"
        )


def broadcast_features(v: Any, ndim: int) -> Any:
    """Reshape a per-feature vector ``(C,)`` to ``(1, ..., 1, C)`` of rank ``ndim``.

    fnet broadcasts explicitly, so it runs under ``jax_numpy_rank_promotion="raise"``.
    """
    return v.reshape((1,) * (ndim - 1) + v.shape)


def float_input(x: Any, layer: str, dtype: Any = None) -> jax.Array:
    """``x`` as a floating JAX array, for layers that do arithmetic on their input.

    Floating inputs are returned unchanged (their dtype is kept). Integer and bool
    inputs (``uint8`` pixels from the MNIST loaders, say) are cast to ``dtype`` (default
    ``float32``; layers with params pass their params' or compute dtype) BEFORE any
    arithmetic, so sums, means and products cannot overflow or wrap around. The dtype is
    static, so this costs nothing under ``jax.jit``.

    Raises:
      TypeError: ``x`` has a complex or non-numeric dtype; the message names ``layer``.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return x.astype(jnp.float32 if dtype is None else dtype)
    raise TypeError(
        f"{layer} computes on real numbers and cannot take inputs of dtype {x.dtype}; "
        "pass a float array (integer pixels are cast automatically)."
    )


def compute_dtype_of(compute_dtype: Any, layer: str) -> np.dtype | None:
    """Validate a layer's ``compute_dtype`` argument: ``None`` or a floating dtype.

    Raises:
      ValueError: ``compute_dtype`` is not a floating dtype (e.g. ``jnp.int8``).
    """
    if compute_dtype is None:
        return None
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{layer}: compute_dtype must be a floating dtype such as jnp.bfloat16, "
            f"jnp.float16 or jnp.float32 (or None), got {compute_dtype!r}"
        )
    return dtype


def check_param_shapes(
    params: Params, expected: Mapping[str, Sequence[int | None]], layer: str, what: str = "params"
) -> None:
    """Raise ``ShapeError`` naming ``layer`` if ``params`` do not match its configuration.

    ``expected`` maps each name to its shape, ``None`` standing for a dimension the
    configuration does not fix (an input width). Unknown and missing names are errors
    too, so params made for another model cannot run silently. Shapes are static under
    ``jax.jit``: the check is free at run time.
    """
    missing = [n for n in expected if n not in params]
    unknown = sorted(set(params) - set(expected))
    if missing or unknown:
        raise ShapeError(
            f"{layer}: {what} have keys {sorted(params)}, expected {sorted(expected)}; "
            "were these made by this model's init?"
        )
    for n, want in expected.items():
        got = tuple(np.shape(params[n]))
        fits = len(got) == len(want) and all(
            w is None or g == w for g, w in zip(got, want, strict=True)
        )
        if not fits:
            shown = tuple("?" if w is None else w for w in want)
            raise ShapeError(
                f"{layer}: {what}[{n!r}] has shape {got}, but this layer's configuration "
                f"needs {shown}; were these {what} made for another model?"
            )
