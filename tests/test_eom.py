"""The equation of motion's closed forms: translation invariance and the decay of the mean component.

The tests of ``dc.eom`` (formerly in tests/test_symmetry.py; the scale-invariance half of that file is
tests/test_scale_invariance.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- translation invariance
def _softmax_regression(seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 4, size=20)

    def loss(W):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(X @ W), y[:, None], axis=1))

    return loss, jnp.asarray(rng.standard_normal((3, 4)) + 0.7)


def test_mean_component_is_the_direction_a_translation_invariant_loss_ignores():
    loss, W = _softmax_regression()
    assert float(loss(W + 1.3)) == pytest.approx(float(loss(W)), abs=1e-14)
    assert abs(float(dc.eom.mean_component(jax.grad(loss)(W)))) < 1e-16
    assert float(dc.eom.mean_component(W + 1.3) - dc.eom.mean_component(W)) == pytest.approx(1.3, rel=1e-14)
    # pytrees: the mean over all entries of all leaves
    assert float(dc.eom.mean_component({"a": jnp.ones(3), "b": jnp.zeros((1, 1))})) == 0.75


def test_gd_decays_the_mean_component_at_exactly_minus_log_one_minus_eta_lambda():
    loss, W = _softmax_regression()
    eta, lam, n = 0.2, 0.05, 200
    m = jax.vmap(dc.eom.mean_component)(dc.run(dc.gd(eta, lam=lam), loss, W, n).params)
    np.testing.assert_allclose(np.asarray(m), float(m[0]) * (1 - eta * lam) ** np.arange(n + 1), rtol=1e-12)
    rate = (np.log(abs(float(m[0]))) - np.log(abs(float(m[-1])))) / n
    assert rate == pytest.approx(float(dc.eom.mean_decay_rate(eta=eta, lam=lam)), rel=1e-12)


def test_mean_decay_rate_truncations_are_the_log_series():
    eta, lam = 0.5, 0.2  # ηλ = 0.1
    x = eta * lam
    assert float(dc.eom.mean_decay_rate(eta=eta, lam=lam, order=0)) == pytest.approx(x, rel=1e-15)  # gradient flow
    assert float(dc.eom.mean_decay_rate(eta=eta, lam=lam, order=1)) == pytest.approx(x + x**2 / 2, rel=1e-15)  # EoM ξ̃₀
    exact = float(dc.eom.mean_decay_rate(eta=eta, lam=lam))
    assert exact == pytest.approx(-np.log(1 - x), rel=1e-15)
    for order in range(6):
        gap = exact - float(dc.eom.mean_decay_rate(eta=eta, lam=lam, order=order))
        # the first omitted term x^(order+2)/(order+2) leads, and the tail is bounded by it / (1 − x)
        lead = x ** (order + 2) / (order + 2)
        assert lead <= gap <= lead / (1 - x)


def test_mean_decay_rate_validates():
    with pytest.raises(ValueError, match="eta \\* lam must be < 1"):
        dc.eom.mean_decay_rate(eta=2.0, lam=0.5)
    with pytest.raises(ValueError, match="order must be None"):
        dc.eom.mean_decay_rate(eta=0.1, lam=0.1, order=-1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        dc.eom.mean_decay_rate(eta=0.1, lam=-0.1)


def test_log_flow_quadratic_passes_through_every_gd_iterate():
    """theta(k eta) = (I - eta (A + lam I))^k theta0: the all-orders flow interpolates GD exactly."""
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    theta0, eta, lam, n = jnp.array([1.0, -2.0]), 0.2, 0.1, 12
    gd = dc.run(dc.gd(eta, lam=lam), lambda th: 0.5 * th @ A @ th, theta0, n).params
    flow = dc.eom.log_flow_quadratic(A, theta0, eta * jnp.arange(n + 1), eta=eta, lam=lam)
    np.testing.assert_allclose(flow, gd, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="eta \\* mu < 1"):
        dc.eom.log_flow_quadratic(A, theta0, [0.0], eta=1.0, lam=lam)
