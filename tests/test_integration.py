"""The integrators of dyncore.integration: diffrax flows, complex flows, several flows, piecewise fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- integrate
def _expm_sym(A, t):
    w, V = np.linalg.eigh(A)
    return (V * np.exp(-w * t)[None, :]) @ V.T


def test_integrate_linear_field_fixed_and_adaptive(rng, make_spd):
    A = make_spd(rng, [0.5, 1.0, 3.0])
    B = np.array([[0.7]])
    y0 = {"u": jnp.asarray(rng.standard_normal(3)), "v": jnp.array([2.0])}
    ts = np.linspace(0.0, 2.0, 5)
    Aj, Bj = jnp.asarray(A), jnp.asarray(B)

    def field(y):
        return {"u": -Aj @ y["u"], "v": -Bj @ y["v"]}

    expected_u = np.array([_expm_sym(A, t) @ np.asarray(y0["u"]) for t in ts])
    expected_v = np.array([_expm_sym(B, t) @ np.asarray(y0["v"]) for t in ts])

    @jax.jit
    def both(y0):
        return dc.integrate(field, y0, ts, dt=1e-2), dc.integrate(field, y0, ts)

    fixed, adaptive = both(y0)
    for sol, tol in ((fixed, 1e-9), (adaptive, 1e-9)):
        np.testing.assert_allclose(np.asarray(sol.ts), ts)
        np.testing.assert_allclose(np.asarray(sol.ys["u"]), expected_u, atol=tol)
        np.testing.assert_allclose(np.asarray(sol.ys["v"]), expected_v, atol=tol)
        assert int(sol.diverged_at) == -1


def test_integrate_reports_blow_up_of_riccati_equation_without_nan():
    # dy/dt = y^2, y(0) = 1: y = 1/(1 - t) blows up at t = 1. One compiled solve, two bounds.
    ts = np.linspace(0.0, 2.0, 21)
    solve = jax.jit(lambda max_norm: dc.integrate(lambda y: y**2, jnp.array(1.0), ts, dt=1e-2, max_norm=max_norm))
    exact = 1.0 / (1.0 - ts[:10])  # t <= 0.9

    # (a) a finite bound: the first save time where 1/(1 - t) > 4 is t = 0.8
    sol = solve(4.0)
    expected = int(np.argmax(exact > 4.0))
    assert ts[expected] == pytest.approx(0.8)
    assert int(sol.diverged_at) == expected
    ys = np.asarray(sol.ys)
    np.testing.assert_allclose(ys[:expected], exact[:expected], rtol=1e-8)
    np.testing.assert_array_equal(ys[expected:], ys[expected - 1])

    # (b) no bound at all: only the non-finite states past the blow-up count
    sol = solve(np.inf)
    ys, d = np.asarray(sol.ys), int(sol.diverged_at)
    assert np.all(np.isfinite(ys))
    # y <= 10 up to t = 0.9 and infinite at t = 1; the discrete solution is finite but huge
    # there and overflows within a few steps after
    assert 10 <= d <= 12
    np.testing.assert_allclose(ys[:10], exact, rtol=1e-6)
    np.testing.assert_array_equal(ys[d:], ys[d - 1])


def test_integrate_stays_frozen_after_a_transient_excursion():
    # y' = [[-1, 10], [0, -1]] y from (0, 1): y = (10 t e^-t, e^-t). Its norm rises above 2 near
    # t = 0.25 and falls below 2 again after t = 3; once beyond max_norm the run counts as
    # diverged for good, even though the state comes back.
    M = jnp.array([[-1.0, 10.0], [0.0, -1.0]])
    ts = np.linspace(0.0, 6.0, 25)
    sol = dc.integrate(lambda y: M @ y, jnp.array([0.0, 1.0]), ts, dt=1e-2, max_norm=2.0)
    exact = np.stack([10 * ts * np.exp(-ts), np.exp(-ts)], axis=1)
    norms = np.linalg.norm(exact, axis=1)
    expected = int(np.argmax(norms > 2.0))
    assert norms[-1] < 2.0 and expected > 0  # the excursion really ends
    assert int(sol.diverged_at) == expected
    ys = np.asarray(sol.ys)
    np.testing.assert_allclose(ys[:expected], exact[:expected], atol=1e-9)
    np.testing.assert_array_equal(ys[expected:], np.broadcast_to(ys[expected - 1], ys[expected:].shape))


def test_integrate_inside_jit_with_concrete_jax_array_times():
    # A jitted compute (e.g. the one slider_figure compiles) that closes over save times made
    # with jnp.linspace outside: the times are concrete, only the field's parameter is traced.
    ts = jnp.linspace(0.0, 1.0, 3)

    @jax.jit
    def decay(rate):
        return dc.integrate(lambda y: -rate * y, jnp.array([1.0]), ts, dt=0.05).ys[:, 0]

    np.testing.assert_allclose(np.asarray(decay(2.0)), np.exp(-2.0 * np.asarray(ts)), rtol=1e-8)



# ----------------------------------------------------------------------------- integrate_complex
def test_rk4_integrator_is_fourth_order_and_reports_divergence():
    kappa = np.log(1 - 1.5 + 0j) / 1.5  # the PF rate of a mode with ημ = 1.5 (η = 1.5, μ = 1)
    ts = jnp.array([0.0, 0.7, 1.5, 3.0])
    errs = []
    for n in (4, 8):
        sol = dc.integrate_complex(lambda z: kappa * z, jnp.ones(1), ts, substeps=n)
        errs.append(np.abs(np.asarray(sol.ys)[:, 0] - np.exp(kappa * np.asarray(ts))).max())
    assert 2**4 * 0.8 < errs[0] / errs[1] < 2**4 * 1.25  # halving the step: error / 16
    blow = dc.integrate_complex(lambda z: 30.0 * z, jnp.ones(1), ts, substeps=10, max_norm=1e12)
    assert int(blow.diverged_at) == 2 and np.all(np.isfinite(np.asarray(blow.ys)))
    with pytest.raises(ValueError, match="exactly one"):
        dc.integrate_complex(lambda z: z, jnp.ones(1), ts)


# ----------------------------------------------------------------------------- integrate_flows
@pytest.mark.parametrize("method", [dict(substeps=50), dict(dt=0.002)])
def test_integrate_flows_judges_and_freezes_each_flow_on_its_own(method):
    """One flow that blows up (θ' = θ², singular at t = 1) must not freeze the others."""
    ts = jnp.linspace(0.0, 3.0, 31)
    fields = {"decay": lambda y: -y, "blowup": lambda y: y**2}
    sol = dc.integrate_flows(fields, jnp.ones(1), ts, **method)
    np.testing.assert_allclose(np.asarray(sol.ys["decay"][:, 0].real), np.exp(-np.asarray(ts)), rtol=1e-8)
    k = int(sol.diverged_at)
    assert k in (10, 11), k  # the first save at or just after t = 1
    blow = np.asarray(sol.ys["blowup"][:, 0].real)
    assert np.all(np.isfinite(blow)) and np.all(blow[k:] == blow[k - 1]) and abs(blow[k - 1]) <= 1e8


def test_integrate_flows_bounds_each_flow_not_their_sum():
    """Three flows at 0.7 of the bound are inside it, though their joint norm is not."""
    still = {name: (lambda y: jnp.zeros_like(y)) for name in "abc"}
    sol = dc.integrate_flows(still, jnp.array([7.0]), jnp.array([0.0, 1.0]), substeps=2, max_norm=10.0)
    assert int(sol.diverged_at) == -1
    over = dc.integrate_flows(still, jnp.array([11.0]), jnp.array([0.0, 1.0]), substeps=2, max_norm=10.0)
    assert int(over.diverged_at) == 0


# ----------------------------------------------------------------------------- integrate_pieces
def test_integrate_pieces_returns_a_flow_solution_on_the_step_grid():
    """Piece n of th' = -th / (n + 1) scales th by exp(-eta / (n + 1)); RK4 with 100 substeps is exact to ~3e-12."""
    eta, N = 0.5, 6
    sol = dc.integrate_pieces(lambda th, n: -th / (n + 1.0), jnp.array([1.0, -2.0]), N, eta=eta, substeps=100)
    assert isinstance(sol, dc.FlowSolution)
    np.testing.assert_allclose(np.asarray(sol.ts), eta * np.arange(N + 1), rtol=1e-15)
    factor = np.exp(-eta * np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, N + 1))]))
    np.testing.assert_allclose(np.asarray(sol.ys), factor[:, None] * np.array([1.0, -2.0]), rtol=1e-10)
    assert int(sol.diverged_at) == -1


def test_integrate_pieces_reports_and_freezes_a_blow_up():
    # th' = th on every piece: th(n eta) = e^{n eta}; with eta = 1 and max_norm = 100, e^5 > 100 > e^4
    sol = dc.integrate_pieces(lambda th, n: th, jnp.array(1.0), 8, eta=1.0, substeps=20, max_norm=100.0)
    ys = np.asarray(sol.ys)
    assert int(sol.diverged_at) == 5
    np.testing.assert_allclose(ys[:5], np.exp(np.arange(5.0)), rtol=1e-6)
    np.testing.assert_array_equal(ys[5:], ys[4])
    with pytest.raises(ValueError, match="eta must be > 0"):
        dc.integrate_pieces(lambda th, n: th, jnp.array(1.0), 8, eta=0.0)


def test_integrate_pieces_takes_eta_by_keyword_only():
    with pytest.raises(TypeError):
        dc.integrate_pieces(lambda th, n: th, jnp.array(1.0), 0.1, 8)  # the old order (field, theta0, eta, n)
