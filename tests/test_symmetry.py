"""Symmetric layers: exact GD facts for scale- and translation-invariant losses, and the models' predictions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- angular update
def test_angular_update_of_a_rotation_with_changing_radius():
    phi, k = 0.3, np.arange(6)
    radii = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.1])
    path = radii[:, None] * np.stack([np.cos(phi * k), np.sin(phi * k)], axis=1)
    np.testing.assert_allclose(np.asarray(dc.angular_update(path)), np.cos(phi), rtol=1e-14)


def test_angular_update_flattens_layers_and_ignores_scale(rng):
    path = rng.standard_normal((4, 3, 2))
    scaled = path * np.array([2.0, 0.1, 7.0, 1.0])[:, None, None]
    flat = path.reshape(4, -1)
    norms = np.linalg.norm(flat, axis=1)
    expected = np.sum(flat[:-1] * flat[1:], axis=1) / (norms[:-1] * norms[1:])
    np.testing.assert_allclose(np.asarray(dc.angular_update(path)), expected, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(dc.angular_update(scaled)), expected, rtol=1e-13)


def test_angular_update_needs_two_iterates():
    with pytest.raises(ValueError, match="two iterates"):
        dc.angular_update(np.ones((1, 3)))


def test_gd_angle_identity_holds_for_any_scale_invariant_loss(nl_problem):
    # cos Δ_k = (1 − ηλ) r_k / r_{k+1} exactly, because the gradient is orthogonal to w
    eta, lam = 0.3, 0.05
    path = np.asarray(dc.run(dc.gd(eta, lam), nl_problem.loss, nl_problem.params0, 30).params)
    r = np.linalg.norm(path, axis=1)
    np.testing.assert_allclose(np.asarray(dc.angular_update(path)), (1 - eta * lam) * r[:-1] / r[1:], rtol=1e-12)


# ----------------------------------------------------------------------------- equilibria
@pytest.mark.parametrize("eta, lam, c", [(0.1, 0.01, 1.0), (1.0, 0.1, 1.0), (0.5, 0.2, 2.5)])
def test_gd_equilibrium_is_the_fixed_point_of_the_exact_norm_recursion(eta, lam, c):
    eq = dc.norm_equilibrium(eta, lam, c)
    u = np.sqrt(float(eq.r4))  # r*²
    u_next = (1 - eta * lam) ** 2 * u + eta**2 * c**2 / u
    assert u_next == pytest.approx(u, rel=1e-14)
    assert float(eq.cos_delta) == pytest.approx((1 - eta * lam) * np.sqrt(u / u_next), rel=1e-14)


@pytest.mark.parametrize("eta, lam, beta", [(1.0, 0.1, 0.0), (0.5, 0.05, 0.5)])
def test_gd_and_heavy_ball_equilibria_on_the_angle_toy(eta, lam, beta):
    toy = dc.angle_toy(c=1.0)
    path = dc.run(dc.heavy_ball(eta, beta, lam), toy.loss, toy.params0, 3000).params
    eq = dc.norm_equilibrium(eta, lam, 1.0, beta=beta)
    assert float(jnp.sum(path[-1] ** 2) ** 2) == pytest.approx(float(eq.r4), rel=1e-10)
    assert float(dc.angular_update(path[-2:])[0]) == pytest.approx(1 - eta * lam / (1 + beta), abs=1e-12)


def test_equilibrium_values_of_the_four_models():
    # (η, λ) = (1, 0.1), c = 1: the numbers of Miyagawa's toy comparison
    eta, lam = 1.0, 0.1
    gd, eom, paper, lead = (dc.norm_equilibrium(eta, lam, model=m) for m in ("gd", "eom", "paper", "leading"))
    assert float(gd.r4) == pytest.approx(1 / 0.19, rel=1e-14)  # η/(2λ − ηλ²)
    assert float(eom.r4) == pytest.approx(1 / 0.21, rel=1e-14)  # η/(2λ + ηλ²), = Cor. 5.1
    assert float(paper.r4) == float(eom.r4)
    assert float(lead.r4) == pytest.approx(5.0, rel=1e-14)
    assert float(gd.cos_delta) == pytest.approx(0.9, rel=1e-15)
    assert float(paper.cos_delta) == pytest.approx(0.9 / 0.995, rel=1e-14)
    assert float(eom.cos_delta) == pytest.approx(np.cos(np.sqrt(0.21)), rel=1e-14)
    assert float(lead.delta) == pytest.approx(np.sqrt(0.2), rel=1e-14)


def test_models_agree_at_leading_order_and_disagree_in_sign_at_the_next():
    lam = 1.0
    for x in (1e-2, 1e-3, 1e-4):
        gd, eom, paper, lead = (dc.norm_equilibrium(x, lam, model=m) for m in ("gd", "eom", "paper", "leading"))
        # r⁴: GD = lead (1 + x/2 + …), EoM = Cor. 5.1 = lead (1 − x/2 + …)
        assert float((gd.r4 / lead.r4 - 1) / (x / 2)) == pytest.approx(1.0, abs=2 * x)
        assert float((eom.r4 / lead.r4 - 1) / (x / 2)) == pytest.approx(-1.0, abs=2 * x)
        # cos Δ: GD = 1 − x; Cor. 5.2 = 1 − x + x²/2 + …; EoM on the toy = 1 − x − x²/3 + …
        assert float((paper.cos_delta - (1 - x)) / (x**2 / 2)) == pytest.approx(1.0, abs=3 * x)
        assert float((eom.cos_delta - (1 - x)) / x**2) == pytest.approx(-1 / 3, abs=3 * x)
        assert float(gd.delta / np.sqrt(2 * x)) == pytest.approx(1.0, abs=x)


def test_norm_equilibrium_validates():
    with pytest.raises(ValueError, match="eta must be > 0"):
        dc.norm_equilibrium(-0.1, 0.1)
    with pytest.raises(ValueError, match="lam must be > 0"):
        dc.norm_equilibrium(0.1, 0.0)
    with pytest.raises(ValueError, match="c must be > 0"):
        dc.norm_equilibrium(0.1, 0.1, c=0.0)
    with pytest.raises(ValueError, match="model must be one of"):
        dc.norm_equilibrium(0.1, 0.1, model="sde")
    with pytest.raises(ValueError, match="beta is only defined"):
        dc.norm_equilibrium(0.1, 0.1, model="eom", beta=0.5)
    with pytest.raises(ValueError, match="beta must be"):
        dc.norm_equilibrium(0.1, 0.1, beta=1.0)


def test_norm_equilibrium_works_under_jit_with_traced_hyperparameters():
    f = jax.jit(lambda eta, lam, beta: dc.norm_equilibrium(eta, lam, beta=beta).r4)
    assert float(f(0.1, 0.1, 0.9)) == pytest.approx(float(dc.norm_equilibrium(0.1, 0.1, beta=0.9).r4), rel=1e-14)


# ----------------------------------------------------------------------------- norm flows
def test_norm_flow_matches_the_integrated_flows_on_the_angle_toy():
    # Eqs. (15)-(16): r² of gradient flow and of the EoM with ξ̃₀, integrated from the vector fields
    toy, eta, lam = dc.angle_toy(c=1.0), 0.5, 0.1
    ts = jnp.array([0.0, 1.0, 5.0, 60.0])

    @jax.jit
    def integrated():
        fields = [dc.modified_field(toy.loss, eta, order, lam) for order in (0, 1)]
        stacked = lambda Y: jnp.stack([f(y) for f, y in zip(fields, Y)])
        return dc.integrate(stacked, jnp.stack([toy.params0] * 2), ts, dt=eta / 8, max_steps=1000).ys

    r2 = np.sum(np.asarray(integrated()) ** 2, axis=-1)
    np.testing.assert_allclose(r2[:, 1], np.asarray(dc.norm_flow(ts, 1.0, eta, lam, order=1)), rtol=1e-9)
    # gradient flow: compare before the collapse makes the rotation (speed c/r²) too fast for the fixed step
    np.testing.assert_allclose(r2[:3, 0], np.asarray(dc.norm_flow(ts[:3], 1.0, eta, lam, order=0)), rtol=1e-6)
    # at rest, the EoM sits at Cor. 5.1's equilibrium; gradient flow has collapsed
    assert r2[-1, 1] ** 2 == pytest.approx(float(dc.norm_equilibrium(eta, lam, model="eom").r4), rel=1e-9)
    assert float(dc.norm_flow(1e3, 1.0, eta, lam, order=0)) < 1e-80


def test_norm_flow_validates():
    with pytest.raises(ValueError, match="order must be 0"):
        dc.norm_flow([0.0, 1.0], 1.0, 0.1, 0.1, order=2)
    with pytest.raises(ValueError, match="r0 must be > 0"):
        dc.norm_flow([0.0, 1.0], 0.0, 0.1, 0.1)
    with pytest.raises(ValueError, match="lam must be > 0"):
        dc.norm_flow([0.0, 1.0], 1.0, 0.1, 0.0, order=1)
    assert float(dc.norm_flow(2.0, 3.0, 0.1, 0.0, order=0)) == 9.0  # no decay without weight decay


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
    assert abs(float(dc.mean_component(jax.grad(loss)(W)))) < 1e-16
    assert float(dc.mean_component(W + 1.3) - dc.mean_component(W)) == pytest.approx(1.3, rel=1e-14)
    # pytrees: the mean over all entries of all leaves
    assert float(dc.mean_component({"a": jnp.ones(3), "b": jnp.zeros((1, 1))})) == 0.75


def test_gd_decays_the_mean_component_at_exactly_minus_log_one_minus_eta_lambda():
    loss, W = _softmax_regression()
    eta, lam, n = 0.2, 0.05, 200
    m = jax.vmap(dc.mean_component)(dc.run(dc.gd(eta, lam), loss, W, n).params)
    np.testing.assert_allclose(np.asarray(m), float(m[0]) * (1 - eta * lam) ** np.arange(n + 1), rtol=1e-12)
    rate = (np.log(abs(float(m[0]))) - np.log(abs(float(m[-1])))) / n
    assert rate == pytest.approx(float(dc.mean_decay_rate(eta, lam)), rel=1e-12)


def test_mean_decay_rate_truncations_are_the_log_series():
    eta, lam = 0.5, 0.2  # ηλ = 0.1
    x = eta * lam
    assert float(dc.mean_decay_rate(eta, lam, order=0)) == pytest.approx(x, rel=1e-15)  # gradient flow
    assert float(dc.mean_decay_rate(eta, lam, order=1)) == pytest.approx(x + x**2 / 2, rel=1e-15)  # EoM ξ̃₀
    exact = float(dc.mean_decay_rate(eta, lam))
    assert exact == pytest.approx(-np.log(1 - x), rel=1e-15)
    for order in range(6):
        gap = exact - float(dc.mean_decay_rate(eta, lam, order=order))
        # the first omitted term x^(order+2)/(order+2) leads, and the tail is bounded by it / (1 − x)
        lead = x ** (order + 2) / (order + 2)
        assert lead <= gap <= lead / (1 - x)


def test_mean_decay_rate_validates():
    with pytest.raises(ValueError, match="eta \\* lam must be < 1"):
        dc.mean_decay_rate(2.0, 0.5)
    with pytest.raises(ValueError, match="order must be None"):
        dc.mean_decay_rate(0.1, 0.1, order=-1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        dc.mean_decay_rate(0.1, -0.1)
