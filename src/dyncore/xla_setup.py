"""One XLA setting for the CPU, applied when dyncore is imported: compile small loops whole.

XLA's CPU runtime runs a ``lax.scan`` / ``fori_loop`` as a host-side loop that launches every
kernel of the body on every iteration. For the small states of this book (a 10-D quadratic, 40
chains of a 10-D SGD) those launches are most of the cost of a step. XLA has a pass that compiles
a whole loop into one function instead, but only for loops that touch fewer than about 1 kB per
iteration (``xla_cpu_small_while_loop_byte_threshold``). Raising that bound to :data:`LOOP_BYTES`
makes one jitted run of gradient descent on a 10-D quadratic about seven times faster (about 0.55
to 0.07 µs a step, measured on a 2-core x86 virtual machine) and halves the compute of the book's
stochastic chain figures. The results are the same up to rounding.

The setting is an entry of ``--xla_backend_extra_options`` in ``XLA_FLAGS``, which XLA reads when
JAX first starts its backend, so it only takes effect if dyncore is imported before the first
JAX computation (importing JAX itself is fine). It is left alone when ``XLA_FLAGS`` already
names it (your own value wins), or when ``DYNCORE_KEEP_XLA_DEFAULTS=1``. On a GPU the entry has
no effect: only XLA's CPU compiler reads it. Loops that call a library kernel (XLA's CPU matrix
products, sorts) are never compiled whole, whatever the bound.
"""

from __future__ import annotations

import os
import warnings

OPTION = "xla_cpu_small_while_loop_byte_threshold"
#: bytes touched per iteration below which XLA compiles a loop as one function (XLA: about 1 kB)
LOOP_BYTES = 1_000_000
OPT_OUT = "DYNCORE_KEEP_XLA_DEFAULTS"
_EXTRA = "--xla_backend_extra_options="
#: ``XLA_FLAGS`` as the process had it before dyncore's first import (None: unset), e.g. to start
#: a subprocess with XLA's own loop handling whatever was imported first
FLAGS_BEFORE: str | None = os.environ.get("XLA_FLAGS")


def with_loop_option(flags: str, loop_bytes: int = LOOP_BYTES) -> str:
    """``flags`` (an ``XLA_FLAGS`` string) with the loop bound added, unless it names one already.

    The bound joins an existing ``--xla_backend_extra_options`` list (a second such flag would
    replace the first) or comes as a new flag at the end.
    """
    if OPTION in flags:
        return flags
    entry = f"{OPTION}={int(loop_bytes)}"
    parts = flags.split()
    for i, part in enumerate(parts):
        if part.startswith(_EXTRA):
            value = part[len(_EXTRA):]
            parts[i] = _EXTRA + (f"{value},{entry}" if value else entry)
            return " ".join(parts)
    return " ".join(parts + [_EXTRA + entry])


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without this (private) query: assume not
        return False


def configure() -> bool:
    """Add the loop bound to ``XLA_FLAGS`` (see the module docstring); True if it was added now."""
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    new = with_loop_option(flags)
    if new == flags:
        return False
    if _backend_started():
        warnings.warn(
            "dyncore was imported after JAX's first computation, so XLA's CPU loop setting "
            f"({OPTION}) cannot take effect in this process and long scans on the CPU run several "
            "times slower. Import dyncore first, or set XLA_FLAGS before starting Python: "
            f'XLA_FLAGS="{with_loop_option("")}"', stacklevel=2)
        return False
    os.environ["XLA_FLAGS"] = new
    return True


configure()
