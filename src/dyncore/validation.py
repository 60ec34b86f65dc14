r"""Validation of hyper-parameters, shared by every public function of dyncore.

Each hyper-parameter of the book has one name and one valid range:

==========  ==================================  =========================
name        meaning                             valid range
==========  ==================================  =========================
``eta``     learning rate :math:`\eta`          :math:`\eta > 0`
``h``       step size of a flow                 :math:`h > 0`
``lam``     weight decay :math:`\lambda`        :math:`\lambda \ge 0`
``beta``    momentum :math:`\beta`              :math:`0 \le \beta < 1`
``rho``     second-moment decay :math:`\rho`    :math:`0 \le \rho < 1`
``eps``     :math:`\varepsilon`                 :math:`\varepsilon > 0`
==========  ==================================  =========================

Values that are traced by JAX (inside ``jit``/``vmap``/``grad``) cannot be inspected, so they are
passed through unchecked: validate at the boundary where a user hands in concrete numbers (the
slider helper and the runners do).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["RANGES", "check_hparams", "check_positive", "check_positive_int", "is_concrete"]

# name -> (lower, lower_inclusive, upper, upper_inclusive)
RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "eta": (0.0, False, math.inf, False),
    "h": (0.0, False, math.inf, False),
    "lam": (0.0, True, math.inf, False),
    "beta": (0.0, True, 1.0, False),
    "rho": (0.0, True, 1.0, False),
    "eps": (0.0, False, math.inf, False),
}


def _describe(lo: float, lo_inc: bool, hi: float, hi_inc: bool) -> str:
    if math.isinf(hi):
        return (">= " if lo_inc else "> ") + f"{lo:g}"
    return f"in {'[' if lo_inc else '('}{lo:g}, {hi:g}{']' if hi_inc else ')'}"


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a concrete value (not a JAX tracer), so that it can be checked."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_hparams(**values: Any) -> None:
    """Raise ``ValueError`` for any hyper-parameter outside its valid range.

    Args:
      **values: hyper-parameters by their book names (``eta``, ``h``, ``lam``, ``beta``,
        ``rho``, ``eps``); scalars or arrays (every element is checked). ``None`` is skipped,
        and so are traced values.

    Raises:
      ValueError: naming the parameter, the offending value and the valid range, e.g.
        ``eta must be > 0, got -0.1``. NaN and infinities are rejected too.
      KeyError: for a name that is not one of the book's hyper-parameters.

    Example:

    >>> check_hparams(eta=0.1, beta=0.9, lam=0.0)        # valid: nothing happens
    >>> check_hparams(eta=0.1, beta=1.0)
    Traceback (most recent call last):
    ValueError: beta must be in [0, 1), got 1
    """
    for name, value in values.items():
        if value is None or not is_concrete(value):
            continue
        lo, lo_inc, hi, hi_inc = RANGES[name]
        arr = np.asarray(value, dtype=float)
        ok = np.isfinite(arr)
        ok &= (arr >= lo) if lo_inc else (arr > lo)
        if not math.isinf(hi):
            ok &= (arr <= hi) if hi_inc else (arr < hi)
        if not np.all(ok):
            bad = arr[~ok].ravel()[0] if arr.ndim else arr
            raise ValueError(f"{name} must be {_describe(lo, lo_inc, hi, hi_inc)}, got {float(bad):g}")


def check_positive(name: str, value: Any, *, allow_zero: bool = False, why: str = "") -> None:
    """Check that a model constant (not a book hyper-parameter) is finite and > 0 (or >= 0).

    Traced values pass unchecked, as in :func:`check_hparams`.

    Raises:
      ValueError: ``c2 must be > 0, got 0``; ``why`` is added after the range
        (``lam must be > 0 for an equilibrium to exist, got 0``).
    """
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    ok = np.isfinite(arr) & ((arr >= 0) if allow_zero else (arr > 0))
    if not np.all(ok):
        bad = float(arr[~ok].ravel()[0]) if arr.ndim else float(arr)
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}{' ' + why if why else ''}, got {bad:g}")


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` after checking that it is a positive integer.

    Raises:
      ValueError: ``n_steps must be a positive integer, got 0``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
