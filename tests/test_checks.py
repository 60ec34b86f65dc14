"""Measured-versus-predicted checks and log-log slope fits."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


def test_check_passes_and_prints_evidence(capsys):
    res = dc.check("GF error slope", 1.037, 1.0, atol=0.1)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = out.strip()
    assert line.startswith("✓")
    assert "GF error slope" in line and "measured" in line and "predicted" in line
    assert "1.037" in line
    assert res.passed is True
    assert res.line == line
    assert res.measured == 1.037 and res.predicted == 1.0
    assert res.error == pytest.approx(0.037, abs=1e-15)
    assert res.tol == 0.1


def test_check_fails_with_cross_and_raises(capsys):
    with pytest.raises(AssertionError, match="✗") as info:
        dc.check("order", 1.5, 1.0, atol=0.1)
    assert "measured 1.5" in str(info.value) and "predicted 1" in str(info.value)
    assert "✗" in capsys.readouterr().out  # the failing line is printed too


def test_check_quiet_prints_nothing_but_still_raises(capsys):
    dc.check("x", 1.0, 1.0, atol=1e-9, quiet=True)
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError):
        dc.check("x", 2.0, 1.0, atol=1e-9, quiet=True)
    assert capsys.readouterr().out == ""


def test_absolute_versus_relative_tolerance():
    # |m - p| = 1e4: relatively small (1%), absolutely large.
    res = dc.check("big", 1.01e6, 1.0e6, rtol=0.02, quiet=True)
    assert res.error == pytest.approx(0.01, rel=1e-9)
    with pytest.raises(AssertionError):
        dc.check("big", 1.01e6, 1.0e6, atol=0.02, quiet=True)
    # |m - p| = 0.05 around a small prediction: absolutely small, relatively large (50%).
    dc.check("small", 0.15, 0.1, atol=0.06, quiet=True)
    with pytest.raises(AssertionError):
        dc.check("small", 0.15, 0.1, rtol=0.4, quiet=True)
    # relative tolerance is relative to the *prediction*, not the measurement
    dc.check("rel", 1.5, 1.0, rtol=0.5, quiet=True)  # 0.5/1.0 = 0.5 <= 0.5
    with pytest.raises(AssertionError):
        dc.check("rel", 1.0, 1.5, rtol=0.3, quiet=True)  # 0.5/1.5 = 0.333 > 0.3


def test_tolerance_is_inclusive_and_symmetric():
    dc.check("edge", 1.5, 1.0, atol=0.5, quiet=True)
    dc.check("edge", 0.5, 1.0, atol=0.5, quiet=True)
    with pytest.raises(AssertionError):
        dc.check("edge", 0.5, 1.0, atol=0.4999, quiet=True)


def test_relative_tolerance_with_zero_prediction_fails():
    with pytest.raises(AssertionError):
        dc.check("zero", 1e-300, 0.0, rtol=0.5, quiet=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measured_value_fails(bad):
    with pytest.raises(AssertionError, match="✗"):
        dc.check("nan", bad, 1.0, atol=1e300, quiet=True)
    with pytest.raises(AssertionError):
        dc.check("nan", bad, 1.0, rtol=1e300, quiet=True)
    # an infinite tolerance is refused outright (it would accept any finite measurement)
    with pytest.raises(ValueError, match="finite"):
        dc.check("nan", bad, 1.0, atol=math.inf, quiet=True)


def test_check_accepts_jax_and_numpy_scalars():
    res = dc.check("arr", jnp.asarray(2.0), np.array([2.0]), atol=1e-12, quiet=True)
    assert res.passed and res.error == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"atol": 0.1, "rtol": 0.1}, {"atol": 0.0}, {"rtol": -1.0}, {"atol": math.nan}],
)
def test_check_rejects_bad_tolerances(kwargs):
    with pytest.raises(ValueError):
        dc.check("x", 1.0, 1.0, **kwargs)


def test_check_rejects_non_scalars():
    with pytest.raises(ValueError, match="scalars"):
        dc.check("x", np.ones(2), 1.0, atol=1.0)


@pytest.mark.parametrize("coef,power", [(3.0, 2.5), (7.0, -1.0), (0.01, 1.0), (2.0, 0.0)])
def test_fit_slope_recovers_exact_power_laws(coef, power):
    x = np.array([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4])
    y = coef * x**power
    assert dc.fit_slope(x, y) == pytest.approx(power, abs=1e-12)


def test_fit_slope_is_a_least_squares_fit_not_endpoint_slope():
    # log y = 2 log x + noise; least squares over all points, known closed form from numpy lstsq.
    x = np.array([1.0, 2.0, 4.0, 8.0])
    y = x**2 * np.array([1.0, 1.1, 0.9, 1.0])
    lx, ly = np.log(x), np.log(y)
    design = np.stack([lx, np.ones_like(lx)], axis=1)
    expected = np.linalg.lstsq(design, ly, rcond=None)[0][0]
    assert dc.fit_slope(x, y) == pytest.approx(expected, abs=1e-12)
    # the endpoint slope would be exactly 2: the fit must differ from it
    assert abs(dc.fit_slope(x, y) - 2.0) > 1e-3


@pytest.mark.parametrize(
    "x,y",
    [
        ([0.0, 1.0], [1.0, 2.0]),
        ([1.0, 2.0], [1.0, -2.0]),
        ([-1.0, 2.0], [1.0, 2.0]),
        ([1.0, 2.0], [1.0, math.nan]),
        ([1.0, 2.0, 3.0], [1.0, 2.0]),
        ([1.0], [1.0]),
    ],
)
def test_fit_slope_rejects_invalid_input(x, y):
    with pytest.raises(ValueError):
        dc.fit_slope(x, y)


def test_fit_slope_rejects_infinite_values():
    # documented: "positive, finite x and y"; an infinite error must not slip through as NaN.
    with pytest.raises(ValueError):
        dc.fit_slope([1.0, 2.0, 4.0], [1.0, 2.0, math.inf])


def test_check_slope_passes_for_true_order_and_fails_for_wrong_one(capsys):
    eta = np.array([0.1, 0.05, 0.025])
    err = 5.0 * eta**2
    res = dc.check_slope("order", eta, err, 2.0, atol=1e-9)
    assert res.passed and res.measured == pytest.approx(2.0, abs=1e-12)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        dc.check_slope("order", eta, err, 1.0, atol=0.15)


# ----------------------------------------------------------------------------- rel_error
def test_rel_error_on_arrays_and_pytrees():
    a = np.array([3.0, 4.0])
    assert dc.rel_error(a, a) == 0.0
    assert dc.rel_error(np.array([3.0, 5.0]), a) == pytest.approx(1.0 / 5.0)
    # pytrees: the norm runs over all leaves together
    tree_b = {"w": np.array([3.0]), "b": np.array([4.0])}
    tree_a = {"w": np.array([3.0]), "b": np.array([4.0 + 0.5])}
    assert dc.rel_error(tree_a, tree_b) == pytest.approx(0.5 / 5.0)
    assert dc.rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert dc.rel_error(np.ones(2), np.zeros(2)) == float("inf")
    with pytest.raises(ValueError):
        dc.rel_error(np.ones(2), np.ones(3))


# ----------------------------------------------------------------------------- check_bound
def test_check_bound_passes_prints_and_fails(capsys):
    r = dc.check_bound("ratio", 1.85, lower=1.5)
    out = capsys.readouterr().out
    assert "✓" in out and "measured 1.85" in out and "predicted > 1.5" in out and r.passed
    dc.check_bound("time", 40.0, upper=100.0)
    dc.check_bound("inside", 0.5, lower=0.0, upper=1.0)
    with pytest.raises(AssertionError, match="✗"):
        dc.check_bound("ratio", 1.2, lower=1.5)
    with pytest.raises(AssertionError):
        dc.check_bound("time", 120.0, upper=100.0)
    with pytest.raises(AssertionError):
        dc.check_bound("nan", float("nan"), lower=0.0)
    with pytest.raises(AssertionError):  # the bound itself is excluded
        dc.check_bound("edge", 1.5, lower=1.5)
    with pytest.raises(ValueError):
        dc.check_bound("none", 1.0)
    with pytest.raises(ValueError):
        dc.check_bound("crossed", 1.0, lower=2.0, upper=1.0)


@pytest.mark.parametrize("tol", [dict(atol=math.inf), dict(rtol=math.inf), dict(atol=math.nan)])
def test_check_refuses_a_tolerance_that_passes_anything(tol):
    with pytest.raises(ValueError, match="must be finite and > 0"):
        dc.check("x", 1e300, 0.0, **tol)


@pytest.mark.parametrize("bounds", [dict(lower=math.nan), dict(upper=math.nan), dict(lower=-math.inf)])
def test_check_bound_refuses_a_bound_that_is_not_a_number(bounds):
    with pytest.raises(ValueError, match="must be a finite number"):
        dc.check_bound("x", 1.0, **bounds)
