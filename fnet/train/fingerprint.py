"""Fingerprints of what defines a training run, so a checkpoint can refuse another run.

A fingerprint is a flat, JSON-able ``{path: value}`` dict of strings. :func:`describe_value`
walks a Python value (a model, an optax ``GradientTransformation``, a loss function, a
closure) and records:

- every scalar it reaches (numbers, strings, bools, ``None``) by a readable path, e.g.
  ``update.update_fns[1].tx.update.step_size: '-0.001'`` for ``optax.adam(1e-3)``;
- every array by shape, dtype and a SHA-256 of its bytes (arrays over 16 MiB: of
  4096 evenly strided elements);
- every Python function by module and qualified name, plus a digest of its code object
  (bytecode, constants, referenced names; nested code objects included), and then,
  recursively, its default arguments, the contents of its closure cells, and the module
  globals its code reads (except modules, classes and library functions);
- an object reached twice (a layer held by a combinator's ``init`` and ``apply``) in
  full the first time and as ``<same as PATH>`` after;
- dataclasses (fnet ``Model``), named tuples, lists, dicts and ``functools.partial`` by
  their fields/items; other objects by type name and their ``__dict__``.

An optax ``GradientTransformation`` is a pair of closures, so its hyperparameters are the
numbers in those closures' cells (optax builds ``adam(lr)`` as a chain whose last
element closes over ``-lr``): changing the learning rate, betas, momentum, a schedule's
constants or the chain's order changes the fingerprint. ``optax.inject_hyperparams``
state is additionally read as named numbers by :func:`hyperparams`.

What cannot be detected (documented in ``docs/training.md``):

- functions of jax, jaxlib, numpy and the standard library are compared by name only
  (their code belongs to the installed version);
- objects defined in C (other than arrays) are compared by type name only;
- state reached in ways other than closures, defaults, globals read by the code and
  object attributes (e.g. a file the loss reads) is not seen;
- a code change of fnet, optax or your own functions DOES change the fingerprint (an
  upgrade between save and resume is reported as a code difference).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["describe_value", "diff", "hyperparams"]

_LIBRARY_MODULES = ("jax", "jaxlib", "numpy", "builtins", "functools", "math", "operator",
                    "ml_dtypes", "typing", "collections", "abc", "itertools")  # fmt: skip
_MAX_ARRAY_BYTES = 16 * 2**20
_MAX_DEPTH = 24


def _is_library(module: str | None) -> bool:
    root = (module or "").split(".")[0]
    return root in _LIBRARY_MODULES


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.sha256()

    def add(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                add(const)
            elif isinstance(const, frozenset):
                h.update(repr(sorted(map(repr, const))).encode())
            else:
                h.update(repr(const).encode())

    add(code)
    return h.hexdigest()[:16]


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _array_digest(a: Any) -> str:
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        a = jax.random.key_data(a)
    arr = np.asarray(a)
    flat = arr.reshape(-1)
    if arr.nbytes > _MAX_ARRAY_BYTES:
        flat = flat[:: max(1, flat.size // 4096)]
    digest = hashlib.sha256(np.ascontiguousarray(flat).tobytes()).hexdigest()[:16]
    return f"array{tuple(arr.shape)} {arr.dtype.name} sha256:{digest}"


class _Walker:
    def __init__(self) -> None:
        self.out: dict[str, str] = {}
        self.first: dict[int, str] = {}  # id -> the path where it was first walked
        self.alive: list[Any] = []  # keeps walked objects alive, so ids are not reused

    def put(self, path: str, value: str) -> None:
        self.out[path or "."] = value

    def walk(self, obj: Any, path: str, depth: int = 0) -> None:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.put(path, repr(obj))
            return
        if isinstance(obj, enum.Enum):
            self.put(path, f"{type(obj).__qualname__}.{obj.name}")
            return
        if isinstance(obj, np.generic):
            self.put(path, f"{obj.dtype.name}({obj.item()!r})")
            return
        if isinstance(obj, (np.ndarray, jax.Array)) and not isinstance(obj, jax.core.Tracer):
            self.put(path, _array_digest(obj))
            return
        if isinstance(obj, (type, types.ModuleType)):
            self.put(path, f"<{type(obj).__name__} {getattr(obj, '__module__', '')}."
                           f"{getattr(obj, '__qualname__', obj.__name__)}>")  # fmt: skip
            return
        if depth > _MAX_DEPTH:
            self.put(path, f"<{type(obj).__qualname__}: too deep to compare>")
            return
        if id(obj) in self.first:  # shared (or cyclic): walked once, referenced after
            self.put(path, f"<same as {self.first[id(obj)] or '.'}>")
            return
        self.first[id(obj)] = path
        self.alive.append(obj)
        self._walk_container(obj, path, depth + 1)

    def _walk_container(self, obj: Any, path: str, depth: int) -> None:
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
            self.put(path + "<type>", type(obj).__qualname__)
            for name in obj._fields:
                self.walk(getattr(obj, name), f"{path}.{name}", depth)
        elif isinstance(obj, (tuple, list)):
            self.put(path + "<len>", f"{type(obj).__name__}[{len(obj)}]")
            for i, v in enumerate(obj):
                self.walk(v, f"{path}[{i}]", depth)
        elif isinstance(obj, Mapping):
            self.put(path + "<len>", f"dict[{len(obj)}]")
            for k in sorted(obj, key=repr):
                self.walk(obj[k], f"{path}[{k!r}]", depth)
        elif isinstance(obj, functools.partial):
            self.walk(obj.func, f"{path}.func", depth)
            self.walk(obj.args, f"{path}.args", depth)
            self.walk(obj.keywords, f"{path}.keywords", depth)
        elif isinstance(obj, types.MethodType):
            self.walk(obj.__func__, f"{path}.__func__", depth)
            self.walk(obj.__self__, f"{path}.__self__", depth)
        elif isinstance(obj, types.FunctionType):
            self._walk_function(obj, path, depth)
        elif dataclasses.is_dataclass(obj):
            self.put(path + "<type>", type(obj).__qualname__)
            for field in dataclasses.fields(obj):
                self.walk(getattr(obj, field.name), f"{path}.{field.name}", depth)
        elif hasattr(obj, "__wrapped__"):  # jax.jit(f), functools.wraps
            self.put(path + "<type>", type(obj).__qualname__)
            self.walk(obj.__wrapped__, f"{path}.__wrapped__", depth)
        elif _is_library(type(obj).__module__) or not hasattr(obj, "__dict__"):
            name = getattr(obj, "__qualname__", "") or getattr(obj, "__name__", "")
            self.put(path, f"<{type(obj).__module__}.{type(obj).__qualname__} {name}>".strip())
        else:
            self.put(path + "<type>", f"{type(obj).__module__}.{type(obj).__qualname__}")
            for k in sorted(vars(obj)):
                self.walk(vars(obj)[k], f"{path}.{k}", depth)

    def _walk_function(self, fn: types.FunctionType, path: str, depth: int) -> None:
        where = f"{fn.__module__}.{fn.__qualname__}"
        if _is_library(fn.__module__):
            self.put(path, f"<function {where}>")
            return
        self.put(path + "<function>", where)
        self.put(path + "<code>", _code_digest(fn.__code__))
        if fn.__defaults__:
            self.walk(fn.__defaults__, f"{path}.__defaults__", depth)
        if fn.__kwdefaults__:
            self.walk(fn.__kwdefaults__, f"{path}.__kwdefaults__", depth)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a variable not yet assigned)
                self.put(f"{path}.{name}", "<empty cell>")
                continue
            self.walk(contents, f"{path}.{name}", depth)
        for name in sorted(_global_names(fn.__code__)):
            if name not in fn.__globals__:
                continue
            value = fn.__globals__[name]
            if isinstance(value, (types.ModuleType, type)):
                continue
            if isinstance(value, types.FunctionType) and _is_library(value.__module__):
                continue
            if isinstance(value, types.FunctionType) and value.__module__ == fn.__module__:
                # A function of the same module: compare it by its code only (no deep walk
                # through a whole module's call graph).
                self.put(f"{path}.<global {name}>", _code_digest(value.__code__))
                continue
            self.walk(value, f"{path}.<global {name}>", depth)


def describe_value(obj: Any) -> dict[str, str]:
    """A flat fingerprint ``{path: value}`` of ``obj`` (see the module docstring).

    Deterministic across processes for the same code and values (no ``id``s, addresses
    or hash-randomised orders), so it can be saved as JSON and compared on resume.

    Args:
      obj: any Python value: a model, an optax ``GradientTransformation``, a function.

    Returns:
      ``dict[str, str]``; paths start at ``""`` (the value itself is ``"."``).
    """
    walker = _Walker()
    walker.walk(obj, "")
    return walker.out


def hyperparams(opt_state: Any) -> dict[str, str]:
    """Named hyperparameters from ``optax.inject_hyperparams`` states inside ``opt_state``.

    Returns ``{"<path>.<name>": repr(float value)}`` for every ``hyperparams`` dict found
    (e.g. ``{"hyperparams.learning_rate": "0.001"}``); ``{}`` when there is none.
    """
    out: dict[str, str] = {}

    def visit(node: Any, path: str) -> None:
        hp = getattr(node, "hyperparams", None)
        if isinstance(hp, Mapping):
            for k in sorted(hp):
                v = hp[k]
                try:
                    out[f"{path}hyperparams.{k}"] = repr(np.asarray(v).tolist())
                except Exception:
                    out[f"{path}hyperparams.{k}"] = repr(v)
        if isinstance(node, (tuple, list)):
            for i, child in enumerate(node):
                visit(child, f"{path}[{i}].")
        elif isinstance(node, Mapping):
            for k in sorted(node, key=repr):
                visit(node[k], f"{path}[{k!r}].")
        elif hasattr(node, "inner_state"):
            visit(node.inner_state, f"{path}inner_state.")

    visit(opt_state, "")
    return out


def diff(saved: Mapping[str, Any], now: Mapping[str, Any], limit: int = 3) -> list[str]:
    """Readable differences between two fingerprints: at most ``limit`` lines, then a count.

    Each line is ``"<path>: checkpoint <a>, now <b>"``; a path only on one side shows
    ``missing`` on the other.
    """
    keys = [k for k in dict.fromkeys([*saved, *now]) if saved.get(k) != now.get(k)]
    lines = [
        f"{k}: checkpoint {saved.get(k, 'missing')}, now {now.get(k, 'missing')}"
        for k in keys[:limit]
    ]
    if len(keys) > limit:
        lines.append(f"... and {len(keys) - limit} more")
    return lines
