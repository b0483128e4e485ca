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


def _traced(args: Any) -> bool:
    """Whether any leaf of ``args`` is a tracer (we are inside a JAX transformation)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))


def platform_of(args: Any) -> str:
    """The platform the arguments live on (their first sharded leaf's), else the default."""
    for leaf in jax.tree.leaves(args):
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None:
            return next(iter(sharding.device_set)).platform
    return jax.default_backend()


class ConvAwareJit:
    """``jax.jit(fn, **jit_kwargs)`` compiled with :func:`compiler_options`.

    The first call traces ``fn`` for its arguments and picks the options from that
    program (convolutions on CPU, see the module docstring); every call then goes to one
    ``jax.jit(fn, compiler_options=..., **jit_kwargs)``, with jit's own cache (new shapes
    retrace as usual); ``lower`` and ``trace`` pick them the same way. Called with
    tracers (inside another ``jax.jit``, ``vmap`` or ``grad``), it is a plain
    ``jax.jit(fn, **jit_kwargs)``: the outer program is the one compiled. Other attributes
    are that jitted function's, or before the first call a plain
    ``jax.jit(fn, **jit_kwargs)``'s.
    """

    def __init__(self, fn: Any, **jit_kwargs: Any) -> None:
        self._fn, self._jit_kwargs = fn, jit_kwargs
        self._jitted: Any = None
        # Called under another transformation (a jit, vmap or grad of a function that
        # calls the step), compiler options are not allowed: the outer jit compiles.
        self._plain = jax.jit(fn, **jit_kwargs)
        functools.update_wrapper(self, fn)

    def _jit_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The jitted function, its options picked from the program for ``args`` once."""
        if self._jitted is None:
            traced = jax.jit(self._fn, **self._jit_kwargs).trace(*args, **kwargs)
            options = compiler_options(traced.jaxpr, platform_of((args, kwargs)))
            self._jitted = jax.jit(self._fn, compiler_options=options, **self._jit_kwargs)
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _traced((args, kwargs)):  # inside another jit/vmap/grad: that one compiles
            return self._plain(*args, **kwargs)
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
        return getattr(self.__dict__.get("_jitted") or self.__dict__["_plain"], name)
