"""Measured-versus-predicted checks: how every claim of the book is executed.

A chapter states a prediction (a convergence order, a closed form, a conserved quantity), measures
the same number in a simulation, and calls :func:`check`. The call prints one line, for example::

    ✓ GF error slope: measured 1.037, predicted 1 ± 0.1

and raises ``AssertionError`` with the same line (marked ✗) when the tolerance is broken, so a
wrong derivation fails both ``pytest`` (through nbval) and the book build.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["CheckResult", "check", "check_bound", "fit_slope", "check_slope", "rel_error"]


class CheckResult(NamedTuple):
    """Outcome of :func:`check`.

    Attributes:
      name: what was checked.
      measured: the measured value.
      predicted: the predicted value.
      error: ``|measured - predicted|`` (absolute) or that divided by ``|predicted|`` (relative).
      tol: the tolerance the error was compared with.
      passed: ``error <= tol``.
      line: the printed line.
    """

    name: str
    measured: float
    predicted: float
    error: float
    tol: float
    passed: bool
    line: str

    def _ipython_display_(self) -> None:
        """Display nothing when a check is a cell's last expression: its line is already printed."""


def _fmt(x: float, digits: int) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


def check(
    name: str,
    measured: ArrayLike,
    predicted: ArrayLike,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    digits: int = 4,
    quiet: bool = False,
) -> CheckResult:
    """Compare a measured scalar with its prediction, print the evidence, assert agreement.

    Exactly one of ``atol`` and ``rtol`` is given:

    .. math:: |m - p| \\le \\mathrm{atol} \\quad\\text{or}\\quad |m - p| \\le \\mathrm{rtol}\\,|p| .

    Args:
      name: a short description of the claim ("GF error slope").
      measured: the measured value (a scalar; 0-d arrays and JAX scalars are accepted).
      predicted: the prediction.
      atol: absolute tolerance.
      rtol: relative tolerance.
      digits: significant digits printed for measured and predicted values.
      quiet: do not print (the result is still returned, and a failure still raises).

    Returns:
      A :class:`CheckResult`.

    Raises:
      AssertionError: when the tolerance is broken, or the measured value is not finite.
      ValueError: when not exactly one tolerance is given, or it is not finite and positive, or a
        value is not a scalar.

    Example:

    >>> import math
    >>> _ = check("pi", 355 / 113, math.pi, rtol=1e-6)
    ✓ pi: measured 3.142, predicted 3.142 (rel. tol 1e-06)
    >>> check("pi", 22 / 7, math.pi, rtol=1e-6)
    Traceback (most recent call last):
    AssertionError: ✗ pi: measured 3.143, predicted 3.142 (rel. tol 1e-06)
    """
    if (atol is None) == (rtol is None):
        raise ValueError("give exactly one of atol and rtol")
    tol = float(atol if atol is not None else rtol)
    if not (tol > 0 and math.isfinite(tol)):  # an infinite tolerance would pass anything
        raise ValueError(f"{'atol' if atol is not None else 'rtol'} must be finite and > 0, got {tol:g}")
    m_arr, p_arr = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    if m_arr.size != 1 or p_arr.size != 1:
        raise ValueError(f"check compares scalars; got shapes {m_arr.shape} and {p_arr.shape}")
    m, p = float(m_arr.reshape(())), float(p_arr.reshape(()))
    diff = abs(m - p)
    if rtol is not None:
        error = diff / abs(p) if p != 0 else math.inf
        tol_text = f"± {rtol * 100:.3g}%" if rtol >= 1e-3 else f"(rel. tol {rtol:.1g})"
    else:
        error = diff
        tol_text = f"± {atol:.2g}"
    passed = bool(math.isfinite(m) and error <= tol)
    mark = "✓" if passed else "✗"
    line = f"{mark} {name}: measured {_fmt(m, digits)}, predicted {_fmt(p, digits)} {tol_text}"
    if not quiet:
        print(line)
    if not passed:
        raise AssertionError(line)
    return CheckResult(name, m, p, error, tol, passed, line)


def check_bound(
    name: str,
    measured: ArrayLike,
    *,
    lower: float | None = None,
    upper: float | None = None,
    digits: int = 4,
    quiet: bool = False,
) -> CheckResult:
    """Check a one-sided (or two-sided) prediction, :math:`\\mathrm{lower} < m < \\mathrm{upper}`.

    For claims that are inequalities ("Eq. (12) over-estimates the error by more than 1.5x",
    "the redraw takes less than 100 ms"). Prints ``✓ name: measured 1.85, predicted > 1.5`` and
    raises ``AssertionError`` (marked ✗) when the bound is broken or the value is not finite.

    Raises:
      ValueError: when neither bound is given, a bound is not finite, ``lower >= upper``, or the
        value is not a scalar.

    Example:

    >>> _ = check_bound("step below the edge of stability", 1.9, upper=2.0)
    ✓ step below the edge of stability: measured 1.9, predicted < 2
    """
    if lower is None and upper is None:
        raise ValueError("give lower, upper or both")
    for label, bound in (("lower", lower), ("upper", upper)):
        if bound is not None and not math.isfinite(float(bound)):
            raise ValueError(f"{label} must be a finite number, got {bound}")
    if lower is not None and upper is not None and not lower < upper:
        raise ValueError(f"lower must be < upper, got {lower:g} and {upper:g}")
    m_arr = np.asarray(measured, dtype=float)
    if m_arr.size != 1:
        raise ValueError(f"check_bound takes a scalar; got shape {m_arr.shape}")
    m = float(m_arr.reshape(()))
    parts = []
    if lower is not None:
        parts.append(f"> {_fmt(lower, digits)}")
    if upper is not None:
        parts.append(f"< {_fmt(upper, digits)}")
    violation = max(
        (lower - m) if lower is not None else -math.inf,
        (m - upper) if upper is not None else -math.inf,
    )
    passed = bool(math.isfinite(m) and violation < 0)
    line = f"{'✓' if passed else '✗'} {name}: measured {_fmt(m, digits)}, predicted {' and '.join(parts)}"
    if not quiet:
        print(line)
    if not passed:
        raise AssertionError(line)
    bound = lower if lower is not None else upper
    return CheckResult(name, m, float(bound), max(violation, 0.0), 0.0, passed, line)


def rel_error(a: Any, b: Any) -> float:
    """Relative distance :math:`\\|a - b\\| / \\|b\\|` of two arrays or pytrees of the same structure.

    The norm is the Euclidean norm over all leaves. Returns ``inf`` when ``b`` is zero and
    ``a`` is not, and ``0`` when both are zero.

    Example:

    >>> rel_error([1.0, 2.0], [1.0, 2.02])
    0.01
    """
    la = [np.asarray(x, dtype=complex).ravel() for x in jax.tree_util.tree_leaves(a)]
    lb = [np.asarray(x, dtype=complex).ravel() for x in jax.tree_util.tree_leaves(b)]
    if len(la) != len(lb) or any(x.shape != y.shape for x, y in zip(la, lb)):
        raise ValueError("rel_error needs two arrays or pytrees of the same structure and shapes")
    num = math.sqrt(sum(float(np.sum(np.abs(x - y) ** 2)) for x, y in zip(la, lb)))
    den = math.sqrt(sum(float(np.sum(np.abs(y) ** 2)) for y in lb))
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def fit_slope(x: ArrayLike, y: ArrayLike) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the measured convergence order).

    Args:
      x: positive abscissae (step sizes :math:`\\eta`).
      y: positive values (errors).

    Returns:
      The slope :math:`p` of the fit :math:`\\log y \\approx p \\log x + c`.

    Raises:
      ValueError: for fewer than two points, mismatched lengths, or non-positive values.

    Example:

    >>> round(fit_slope([0.1, 0.2, 0.4], [0.01, 0.04, 0.16]), 6)   # y = x^2
    2.0
    """
    xa, ya = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape or xa.size < 2:
        raise ValueError(f"fit_slope needs two equally long sequences of >= 2 points, got {xa.size} and {ya.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya)) and np.all(xa > 0) and np.all(ya > 0)):
        raise ValueError("fit_slope needs positive, finite x and y (a log-log fit)")
    slope, _ = np.polyfit(np.log(xa), np.log(ya), 1)
    return float(slope)


def check_slope(
    name: str, x: Sequence[float] | ArrayLike, y: Sequence[float] | ArrayLike, predicted: float, *, atol: float
) -> CheckResult:
    """Fit a log-log slope with :func:`fit_slope` and :func:`check` it against ``predicted``.

    Example:

    >>> _ = check_slope("order", [0.1, 0.2, 0.4], [0.01, 0.04, 0.16], 2.0, atol=0.05)
    ✓ order: measured 2, predicted 2 ± 0.05
    """
    return check(name, fit_slope(x, y), predicted, atol=atol, digits=4)
