"""Combinators build models from models: ``serial``, ``parallel`` and ``residual``.

Children are named by their layer name and a per-name counter (``dense_0``, ``relu_0``,
``dense_1``), or explicitly with a ``(name, model)`` pair. Params and state are dicts
keyed by those names; a child without params gets no entry. Each child's init key is
``layer_key(key, child_name)``, so adding or removing a child of another kind, or any
explicitly named child, leaves every other child's initial values bit-identical.

If any child is a :class:`~fnet.core.StatefulModel`, the combinator is one too and
threads the state dict through; otherwise it is a plain :class:`~fnet.core.Model`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import jax.numpy as jnp

from fnet.core import (
    AnyModel,
    Model,
    StatefulModel,
    as_shape,
    as_stateful,
    is_stateful,
    layer_key,
)
from fnet.errors import ShapeError

__all__ = ["parallel", "residual", "serial"]

NamedChild = tuple[str, AnyModel]


def _name_children(layers: tuple, combinator: str) -> tuple[NamedChild, ...]:
    if not layers:
        raise ValueError(f"{combinator}() needs at least one layer")
    counts: Counter[str] = Counter()
    named: list[NamedChild] = []
    for item in layers:
        explicit = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
        name, model = item if explicit else (None, item)
        if not isinstance(model, (Model, StatefulModel)):
            raise TypeError(
                f"{combinator}(): expected fnet models or (name, model) pairs, got "
                f"{type(model).__name__}; did you forget to call the layer, e.g. Relu()?"
            )
        if name is None:
            name = f"{model.name}_{counts[model.name]}"
            counts[model.name] += 1
        named.append((name, model))
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{combinator}(): child names must be unique, repeated: {duplicates}")
    return tuple(named)


@contextlib.contextmanager
def _scope(name: str) -> Iterator[None]:
    """Prefix ShapeErrors raised inside a child with the child's name."""
    try:
        yield
    except ShapeError as err:
        raise err.within(name) from None


def _check_param_keys(params: dict, named: tuple[NamedChild, ...], what: str) -> None:
    unknown = sorted(set(params) - {n for n, _ in named})
    if unknown:
        raise KeyError(
            f"{what} contain entries {unknown} that match no layer of this model "
            f"(layers: {[n for n, _ in named]})"
        )


def _child_key(key, name):
    return None if key is None else layer_key(key, name)


def _build(
    init_stateful,
    apply_stateful,
    name: str,
    named: tuple[NamedChild, ...],
    kind: str,
    config: dict | None = None,
) -> AnyModel:
    """A StatefulModel if any child has state, else the plain Model view of the same pair."""
    if any(is_stateful(m) for _, m in named):
        return StatefulModel(init_stateful, apply_stateful, name, named, kind, config or {})

    def init(key, input_shape):
        shape, params, _ = init_stateful(key, input_shape)
        return shape, params

    def apply(params, x, *, key=None, train=False):
        return apply_stateful(params, {}, x, key=key, train=train)[0]

    return Model(init, apply, name, named, kind, config or {})


def serial(*layers: AnyModel | NamedChild, name: str = "serial") -> AnyModel:
    """Chain models: the output of each is the input of the next.

    ``serial(Dense(100), Relu(), Dense(10))`` has params
    ``{"dense_0": {...}, "dense_1": {...}}``; ``init`` infers every shape without data.
    """
    named = _name_children(layers, "serial")
    stateful = [(n, as_stateful(m)) for n, m in named]

    def init_stateful(key, input_shape):
        shape = as_shape(input_shape, "serial")
        params, state = {}, {}
        for child_name, child in stateful:
            with _scope(child_name):
                shape, p, s = child.init(layer_key(key, child_name), shape)
            if p:
                params[child_name] = p
            if s:
                state[child_name] = s
        return shape, params, state

    def apply_stateful(params, state, x, *, key=None, train=False):
        _check_param_keys(params, named, "params")
        _check_param_keys(state, named, "state")
        new_state = {}
        for child_name, child in stateful:
            with _scope(child_name):
                x, s = child.apply(
                    params.get(child_name, {}),
                    state.get(child_name, {}),
                    x,
                    key=_child_key(key, child_name),
                    train=train,
                )
            if s:
                new_state[child_name] = s
        return x, new_state

    return _build(init_stateful, apply_stateful, name, named, "serial")


_COMBINE = ("concat", "sum", None)


def parallel(
    *layers: AnyModel | NamedChild, combine: str | None = "concat", name: str = "parallel"
) -> AnyModel:
    """Apply every branch to the same input and combine the outputs.

    ``combine="concat"`` concatenates along the last axis, ``"sum"`` adds (shapes must
    match), ``None`` returns a tuple of outputs (and a tuple of output shapes from init).
    """
    if combine not in _COMBINE:
        raise ValueError(f"parallel: combine must be one of {_COMBINE}, got {combine!r}")
    named = _name_children(layers, "parallel")
    stateful = [(n, as_stateful(m)) for n, m in named]

    def combine_shapes(shapes):
        if combine is None:
            return tuple(shapes)
        heads = {s[:-1] for s in shapes} if combine == "concat" else set(shapes)
        if len(heads) != 1:
            raise ShapeError(f"parallel(combine={combine!r}): branch output shapes {shapes} differ")
        if combine == "sum":
            return shapes[0]
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))

    def combine_outputs(ys):
        if combine is None:
            return tuple(ys)
        if combine == "sum":
            return sum(ys[1:], ys[0])
        return jnp.concatenate(ys, axis=-1)

    def init_stateful(key, input_shape):
        shape = as_shape(input_shape, "parallel")
        shapes, params, state = [], {}, {}
        for child_name, child in stateful:
            with _scope(child_name):
                out, p, s = child.init(layer_key(key, child_name), shape)
            shapes.append(out)
            if p:
                params[child_name] = p
            if s:
                state[child_name] = s
        return combine_shapes(shapes), params, state

    def apply_stateful(params, state, x, *, key=None, train=False):
        _check_param_keys(params, named, "params")
        _check_param_keys(state, named, "state")
        ys, new_state = [], {}
        for child_name, child in stateful:
            with _scope(child_name):
                y, s = child.apply(
                    params.get(child_name, {}),
                    state.get(child_name, {}),
                    x,
                    key=_child_key(key, child_name),
                    train=train,
                )
            ys.append(y)
            if s:
                new_state[child_name] = s
        return combine_outputs(ys), new_state

    return _build(init_stateful, apply_stateful, name, named, "parallel", {"combine": combine})


def residual(*layers: AnyModel | NamedChild, name: str = "residual") -> AnyModel:
    """``y = x + f(x)`` with ``f = serial(*layers)``; ``f`` must preserve the shape.

    Params and state are those of the inner chain (keyed by its children's names).
    """
    branch = serial(*layers, name=name)
    inner = as_stateful(branch)

    def init_stateful(key, input_shape):
        shape = as_shape(input_shape, "residual")
        out, params, state = inner.init(key, shape)
        if tuple(out) != tuple(shape):
            raise ShapeError(
                f"residual: the branch maps shape {shape} to {out}; it must preserve the shape"
            )
        return out, params, state

    def apply_stateful(params, state, x, *, key=None, train=False):
        y, new_state = inner.apply(params, state, x, key=key, train=train)
        return x + y, new_state

    return _build(init_stateful, apply_stateful, name, branch.children, "residual")
