"""Per-program XLA compiler options: which library runs convolutions on CPU.

XLA:CPU (jaxlib 0.10) hands convolutions, dots and reductions to YNNPACK by default
(``xla_cpu_experimental_ynn_fusion_type``). For the convolutions of a small convnet's
training step YNNPACK is 2-4x slower than XLA's own Eigen convolution on the same CPU
(measured per layer on a 2-core Xeon, B=100, ``docs/performance.md``: 14x14x32->64 forward
5.1 vs 2.6 ms, weight gradient 21 vs 4.9 ms, input gradient 5.1 vs 2.9 ms), and the whole
step ~2x slower. :func:`compiler_options` therefore asks, for a CPU program that contains
a convolution and only for it, that YNNPACK keep the dots and reductions but leave the
convolutions to Eigen. Programs without convolutions, and every other backend, compile
with XLA's defaults. The options go to ``jax.stages.Lowered.compile(compiler_options=...)``
of that one program: nothing process-wide changes.

A user's own ``XLA_FLAGS`` setting of the option wins (fnet then passes nothing), and a
jaxlib that does not know the option compiles with its defaults (checked once, by
compiling a one-line program with it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import jax
from jax.extend import core as jax_core

__all__ = [
    "YNN_OPTION",
    "YNN_WITHOUT_CONVOLUTIONS",
    "ConvAwareJit",
    "compiler_options",
    "eqns",
    "has_convolution",
    "platform_of",
]

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
"""The XLA debug option that lists the op kinds XLA:CPU hands to YNNPACK."""

YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
"""jaxlib 0.10's default kinds (dots, reductions, convolutions) less the convolutions."""


def eqns(jaxpr: Any) -> Iterator[Any]:
    """Every equation of ``jaxpr`` and of its sub-jaxprs (scan/cond/custom_jvp bodies...)."""
    yield from jaxpr.eqns
    for sub in jax_core.subjaxprs(jaxpr):
        yield from eqns(sub)


def has_convolution(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` (a ``Jaxpr`` or ``ClosedJaxpr``) contains a convolution anywhere."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return any(e.primitive.name == "conv_general_dilated" for e in eqns(jaxpr))


@functools.cache
def _option_supported() -> bool:
    """Whether this jaxlib's XLA knows :data:`YNN_OPTION` (one tiny compile, cached)."""
    try:
        lowered = jax.jit(lambda v: v + 1).lower(jax.ShapeDtypeStruct((), "float32"))
        lowered.compile(compiler_options={YNN_OPTION: YNN_WITHOUT_CONVOLUTIONS})
    except Exception:  # XlaRuntimeError/JaxRuntimeError: an unknown option or value
        return False
    return True


def compiler_options(jaxpr: Any, platform: str) -> dict[str, str]:
    """The compiler options fnet passes when it compiles the program ``jaxpr``.

    ``{YNN_OPTION: YNN_WITHOUT_CONVOLUTIONS}`` when ``platform == "cpu"``, the program has
    a convolution, the user's ``XLA_FLAGS`` does not set the option and this jaxlib knows
    it; otherwise ``{}`` (XLA's defaults). See the module docstring for the measurements.
    """
    if platform != "cpu" or YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    if not has_convolution(jaxpr) or not _option_supported():
        return {}
    return {YNN_OPTION: YNN_WITHOUT_CONVOLUTIONS}


_EVAL_TRACE = type(jax_core.find_top_trace(()))
"""The trace in effect outside every transformation (fnet is imported at top level)."""


def _under_transformation() -> bool:
    """Whether a ``jit``, ``vmap``, ``grad``, ``scan``... is being traced right now (even
    when the call at hand sees no tracer: its arguments may be the outer trace's constants)."""
    return type(jax_core.find_top_trace(())) is not _EVAL_TRACE


def platform_of(args: Any) -> str:
    """The platform the arguments live on (their first ``jax.Array``'s), else the default
    device's (``jax.default_device``/``jax_default_device``), else the default backend."""
    return _platform(jax.tree.leaves(args))


def _platform(leaves: list[Any]) -> str:
    for leaf in leaves:
        if isinstance(leaf, jax.Array):
            device_set: set[Any] = leaf.sharding.device_set
            return str(next(iter(device_set)).platform)
    device = getattr(jax.config, "jax_default_device", None)
    if isinstance(device, str):
        return device
    return str(getattr(device, "platform", None) or jax.default_backend())


_MAX_CHOICES = 1024
"""Static configurations a :class:`ConvAwareJit` remembers before it starts over."""


class ConvAwareJit:
    """``jax.jit(fn, **jit_kwargs)`` whose programs compile with :func:`compiler_options`.

    The options are picked once per static configuration and platform: the first call
    with given static arguments (``static_argnames``, which must then be passed by
    keyword) on a platform traces ``fn`` and reads the program; later calls go straight
    to a ``jax.jit`` with those options (jit's own cache: new shapes retrace, committed
    devices are followed, as usual). ``lower`` and ``trace`` pick them the same way.
    Called under another transformation (inside ``jax.jit``, ``vmap``, ``grad``,
    ``lax.scan``...), it is a plain ``jax.jit(fn, **jit_kwargs)``: XLA takes
    compiler options only for a top-level jit, and the outer program is the one compiled.
    Other attributes (``eval_shape``, ...) are the plain jit's.
    """

    def __init__(self, fn: Any, **jit_kwargs: Any) -> None:
        self._fn, self._jit_kwargs = fn, jit_kwargs
        self._static = tuple(jit_kwargs.get("static_argnames", ()))
        self._plain = jax.jit(fn, **jit_kwargs)
        self._choice: dict[Any, Any] = {}  # (static values, platform) -> a jitted fn
        self._tuned: dict[Any, Any] = {}  # the options (sorted items) -> its jitted fn
        functools.update_wrapper(self, fn)

    def _jit_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The jitted function for these arguments: plain under a trace, else the one
        compiled with the options picked for their static values and platform."""
        if _under_transformation():
            return self._plain
        key = (tuple(kwargs.get(name) for name in self._static), self._platform(args, kwargs))
        jitted = self._choice.get(key)
        if jitted is None:
            options = compiler_options(self._plain.trace(*args, **kwargs).jaxpr, key[1])
            jitted = self._plain
            if options:
                items = tuple(sorted(options.items()))
                if items not in self._tuned:
                    self._tuned[items] = jax.jit(
                        self._fn, compiler_options=options, **self._jit_kwargs
                    )
                jitted = self._tuned[items]
            if len(self._choice) >= _MAX_CHOICES:  # bounded, like jit's own caches
                self._choice.clear()
            self._choice[key] = jitted
        return jitted

    def _platform(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """:func:`platform_of` the dynamic arguments, from the first top-level array when
        there is one: flattening every argument on every call (a train state, an
        optimizer's state) cost ~20 us a call in a Python training loop."""
        for a in (*args, *kwargs.values()):
            if isinstance(a, jax.Array):
                return _platform([a])
        dynamic = {k: v for k, v in kwargs.items() if k not in self._static}
        return platform_of((args, dynamic))

    @property
    def plain(self) -> Any:
        """``jax.jit(fn, **jit_kwargs)`` without options (for ahead-of-time compilation
        through a cache that passes the options itself, :func:`fnet.train.engine.compiled`)."""
        return self._plain

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._jit_for(args, kwargs)(*args, **kwargs)

    def trace(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).trace(...)`` of the jitted function with fnet's options."""
        return self._jit_for(args, kwargs).trace(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).lower(...)``; its ``compile()`` uses fnet's options."""
        return self._jit_for(args, kwargs).lower(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_plain"], name)
