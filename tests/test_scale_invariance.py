"""Scale-invariant layers: norm laws, equilibria, angular updates and the clock of SGD with weight decay.

The tests of ``dc.scale_invariance``, gathered from the old tests of ``symmetry`` (angular update,
equilibria, norm flows), ``noether`` (Tanaka & Kunin's norm law, coherence, the RMSProp mapping) and
``mixing`` (Li, Wang & Yu's SDE norm and clock).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import dyncore as dc

si = dc.scale_invariance


def scale_inv(q):
    """Scale-invariant (degree-0 homogeneous) loss on R^3."""
    u = q / jnp.linalg.norm(q)
    return jnp.sin(2 * u[0] - u[1]) + 0.5 * (u[2] - 0.3) ** 2


# ----------------------------------------------------------------------------- angular update
def test_angular_update_of_a_rotation_with_changing_radius():
    phi, k = 0.3, np.arange(6)
    radii = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.1])
    path = radii[:, None] * np.stack([np.cos(phi * k), np.sin(phi * k)], axis=1)
    np.testing.assert_allclose(np.asarray(si.angular_update(path)), np.cos(phi), rtol=1e-14)


def test_angular_update_flattens_layers_and_ignores_scale(rng):
    path = rng.standard_normal((4, 3, 2))
    scaled = path * np.array([2.0, 0.1, 7.0, 1.0])[:, None, None]
    flat = path.reshape(4, -1)
    norms = np.linalg.norm(flat, axis=1)
    expected = np.sum(flat[:-1] * flat[1:], axis=1) / (norms[:-1] * norms[1:])
    np.testing.assert_allclose(np.asarray(si.angular_update(path)), expected, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(si.angular_update(scaled)), expected, rtol=1e-13)


def test_angular_update_needs_two_iterates():
    with pytest.raises(ValueError, match="two iterates"):
        si.angular_update(np.ones((1, 3)))


def test_gd_angle_identity_holds_for_any_scale_invariant_loss(nl_problem):
    # cos Δ_k = (1 − ηλ) r_k / r_{k+1} exactly, because the gradient is orthogonal to w
    eta, lam = 0.3, 0.05
    path = np.asarray(dc.run(dc.gd(eta, lam=lam), nl_problem.loss, nl_problem.theta0, 30).params)
    r = np.linalg.norm(path, axis=1)
    np.testing.assert_allclose(np.asarray(si.angular_update(path)), (1 - eta * lam) * r[:-1] / r[1:], rtol=1e-12)


# ----------------------------------------------------------------------------- equilibria
@pytest.mark.parametrize("eta, lam, c", [(0.1, 0.01, 1.0), (1.0, 0.1, 1.0), (0.5, 0.2, 2.5)])
def test_gd_equilibrium_is_the_fixed_point_of_the_exact_norm_recursion(eta, lam, c):
    eq = si.norm_equilibrium(eta=eta, lam=lam, c=c)
    u = np.sqrt(float(eq.r4))  # r*²
    u_next = (1 - eta * lam) ** 2 * u + eta**2 * c**2 / u
    assert u_next == pytest.approx(u, rel=1e-14)
    assert float(eq.cos_delta) == pytest.approx((1 - eta * lam) * np.sqrt(u / u_next), rel=1e-14)


@pytest.mark.parametrize("eta, lam, beta", [(1.0, 0.1, 0.0), (0.5, 0.05, 0.5)])
def test_gd_and_heavy_ball_equilibria_on_the_angle_toy(eta, lam, beta):
    toy = dc.angle_toy(c=1.0)
    path = dc.run(dc.heavy_ball(eta, beta=beta, lam=lam), toy.loss, toy.theta0, 3000).params
    eq = si.norm_equilibrium(eta=eta, lam=lam, c=1.0, beta=beta)
    assert float(jnp.sum(path[-1] ** 2) ** 2) == pytest.approx(float(eq.r4), rel=1e-10)
    assert float(si.angular_update(path[-2:])[0]) == pytest.approx(1 - eta * lam / (1 + beta), abs=1e-12)


def test_equilibrium_values_of_the_four_models():
    # (η, λ) = (1, 0.1), c = 1: the numbers of Miyagawa's toy comparison
    eta, lam = 1.0, 0.1
    gd, eom, paper, lead = (si.norm_equilibrium(eta=eta, lam=lam, model=m) for m in ("gd", "eom", "paper", "leading"))
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
        gd, eom, paper, lead = (si.norm_equilibrium(eta=x, lam=lam, model=m) for m in ("gd", "eom", "paper", "leading"))
        # r⁴: GD = lead (1 + x/2 + …), EoM = Cor. 5.1 = lead (1 − x/2 + …)
        assert float((gd.r4 / lead.r4 - 1) / (x / 2)) == pytest.approx(1.0, abs=2 * x)
        assert float((eom.r4 / lead.r4 - 1) / (x / 2)) == pytest.approx(-1.0, abs=2 * x)
        # cos Δ: GD = 1 − x; Cor. 5.2 = 1 − x + x²/2 + …; EoM on the toy = 1 − x − x²/3 + …
        assert float((paper.cos_delta - (1 - x)) / (x**2 / 2)) == pytest.approx(1.0, abs=3 * x)
        assert float((eom.cos_delta - (1 - x)) / x**2) == pytest.approx(-1 / 3, abs=3 * x)
        assert float(gd.delta / np.sqrt(2 * x)) == pytest.approx(1.0, abs=x)


def test_norm_equilibrium_validates():
    with pytest.raises(ValueError, match="eta must be > 0"):
        si.norm_equilibrium(eta=-0.1, lam=0.1)
    with pytest.raises(ValueError, match="lam must be > 0"):
        si.norm_equilibrium(eta=0.1, lam=0.0)
    with pytest.raises(ValueError, match="c must be > 0"):
        si.norm_equilibrium(eta=0.1, lam=0.1, c=0.0)
    with pytest.raises(ValueError, match="model must be one of"):
        si.norm_equilibrium(eta=0.1, lam=0.1, model="sde")
    with pytest.raises(ValueError, match="beta is only defined"):
        si.norm_equilibrium(eta=0.1, lam=0.1, model="eom", beta=0.5)
    with pytest.raises(ValueError, match="beta must be"):
        si.norm_equilibrium(eta=0.1, lam=0.1, beta=1.0)


def test_norm_equilibrium_works_under_jit_with_traced_hyperparameters():
    f = jax.jit(lambda eta, lam, beta: si.norm_equilibrium(eta=eta, lam=lam, beta=beta).r4)
    assert float(f(0.1, 0.1, 0.9)) == pytest.approx(float(si.norm_equilibrium(eta=0.1, lam=0.1, beta=0.9).r4), rel=1e-14)


# ----------------------------------------------------------------------------- norm flows
def test_norm_flow_matches_the_integrated_flows_on_the_angle_toy():
    # Eqs. (15)-(16): r² of gradient flow and of the EoM with ξ̃₀, integrated from the vector fields
    toy, eta, lam = dc.angle_toy(c=1.0), 0.5, 0.1
    ts = jnp.array([0.0, 1.0, 5.0, 60.0])

    @jax.jit
    def integrated():
        fields = [dc.modified_field(toy.loss, eta=eta, order=order, lam=lam) for order in (0, 1)]
        stacked = lambda Y: jnp.stack([f(y) for f, y in zip(fields, Y)])
        return dc.integrate(stacked, jnp.stack([toy.theta0] * 2), ts, dt=eta / 8, max_steps=1000).ys

    r2 = np.sum(np.asarray(integrated()) ** 2, axis=-1)
    np.testing.assert_allclose(r2[:, 1], np.asarray(si.norm_flow(ts, r0=1.0, eta=eta, lam=lam, order=1)), rtol=1e-9)
    # gradient flow: compare before the collapse makes the rotation (speed c/r²) too fast for the fixed step
    np.testing.assert_allclose(r2[:3, 0], np.asarray(si.norm_flow(ts[:3], r0=1.0, eta=eta, lam=lam, order=0)), rtol=1e-6)
    # at rest, the EoM sits at Cor. 5.1's equilibrium; gradient flow has collapsed
    assert r2[-1, 1] ** 2 == pytest.approx(float(si.norm_equilibrium(eta=eta, lam=lam, model="eom").r4), rel=1e-9)
    assert float(si.norm_flow(1e3, r0=1.0, eta=eta, lam=lam, order=0)) < 1e-80


def test_norm_flow_validates():
    with pytest.raises(ValueError, match="order must be 0"):
        si.norm_flow([0.0, 1.0], r0=1.0, eta=0.1, lam=0.1, order=2)
    with pytest.raises(ValueError, match="r0 must be > 0"):
        si.norm_flow([0.0, 1.0], r0=0.0, eta=0.1, lam=0.1)
    with pytest.raises(ValueError, match="lam must be > 0"):
        si.norm_flow([0.0, 1.0], r0=1.0, eta=0.1, lam=0.0, order=1)
    assert float(si.norm_flow(2.0, r0=3.0, eta=0.1, lam=0.0, order=0)) == 9.0  # no decay without weight decay


# ----------------------------------------------------------------------------- norm law, coherence, RMSProp (Tanaka & Kunin)
def test_angular_update_and_norm4_on_the_angle_toy():
    toy = dc.angle_toy(1.0)
    tail = jax.jit(
        lambda eta, beta, lam: dc.run(dc.heavy_ball(eta, beta=beta, lam=lam), toy.loss, toy.theta0, 6000).params[-200:]
    )
    for eta, beta, lam in [(0.1, 0.0, 0.01), (0.1, 0.9, 0.01)]:
        path = tail(eta, beta, lam)
        r2 = jnp.sum(path**2, axis=1)
        step2 = jnp.sum(jnp.diff(path, axis=0) ** 2, axis=1)
        np.testing.assert_allclose(
            jnp.mean(step2) / jnp.mean(r2[:-1]), si.equilibrium_angle(eta=eta, lam=lam, beta=beta) ** 2, rtol=1e-9
        )
        exact4 = eta * (1 + beta) / ((1 - beta) ** 2 * (2 * lam - eta * lam**2 / (1 + beta)))
        np.testing.assert_allclose(r2[-1] ** 2, exact4, rtol=1e-9)
        np.testing.assert_allclose(
            si.equilibrium_norm4(eta=eta, lam=lam, grad2=1.0, beta=beta) / exact4, 1 - eta * lam / (2 * (1 + beta)), rtol=1e-12
        )
    # uncorrelated gradients: the momentum gain (1+beta)/(1-beta)^2 drops to 1/(1-beta)
    ratio = si.equilibrium_norm4(eta=0.1, lam=1e-3, grad2=1.0, beta=0.9, coherent=False) / si.equilibrium_norm4(
        eta=0.1, lam=1e-3, grad2=1.0, beta=0.9
    )
    np.testing.assert_allclose(ratio, 0.1 / 1.9, rtol=1e-14)


def test_norm_law_closed_forms():
    eta, lam, beta, n = 0.1, 0.01, 0.5, 300
    g2 = jnp.full((n, 2), 0.7)
    law = jax.jit(lambda lam, r0_sq: si.norm_law(g2, r0_sq=r0_sq, eta=eta, lam=lam, beta=beta))
    r2 = law(lam, jnp.array([1.0, 3.0]))
    t = eta * jnp.arange(n + 1)[:, None]
    star = si.equilibrium_norm4(eta=eta, lam=lam, grad2=0.7, beta=beta)
    np.testing.assert_allclose(
        r2**2, star + (jnp.array([1.0, 9.0]) - star) * jnp.exp(-4 * lam * t / (1 - beta)), rtol=1e-12
    )
    # no weight decay: the accumulation of AdaGrad, r^4 = r0^4 + 2 eta (1+beta)/(1-beta)^3 * sum(eta g^2)
    r2 = law(0.0, jnp.ones(2))
    np.testing.assert_allclose(r2[-1] ** 2, 1.0 + 2 * eta * 1.5 / 0.125 * n * eta * 0.7, rtol=1e-12)


def test_coherence_of_coherent_and_uncorrelated_motion():
    eta, beta = 0.1, 0.9
    g2 = jnp.full(50, 2.0)
    assert float(si.coherence(eta**2 * g2 / (1 - beta) ** 2, g2, eta=eta, beta=beta)) == pytest.approx(1.0, rel=1e-14)

    # uncorrelated unit gradients: E|d|^2 = eta^2 / (1 - beta^2) per step
    @jax.jit
    def kappa_of_noise(key):
        xi = jax.random.normal(key, (100_000,))
        d = jax.lax.scan(lambda b, x: (beta * b + x, -eta * (beta * b + x)), 0.0, xi)[1]
        return si.coherence(d[1000:] ** 2, xi[1000:] ** 2, eta=eta, beta=beta)

    kappa = kappa_of_noise(jax.random.PRNGKey(0))
    np.testing.assert_allclose(kappa, (1 - beta) / (1 + beta), rtol=0.05)


def test_gd_on_a_scale_invariant_loss_is_rmsprop_on_the_sphere():
    loss, q0 = scale_inv, jnp.array([1.0, 2.0, -0.6])  # r0² = 5.4: the dropped eta^4 g^4 / r^4 term is small
    eta, lam, n = 0.1, 0.01, 300

    @jax.jit
    def gd_run():
        path = dc.run(dc.gd(eta, lam=lam), loss, q0, n).params
        g2 = jax.vmap(lambda q: jnp.sum(q**2) * jnp.sum(jax.grad(loss)(q) ** 2))(path[:-1])  # |grad f(u)|^2
        return path, jnp.sum(path**2, axis=1), g2

    path, r2, g2 = gd_run()
    c = 1 - eta * lam
    np.testing.assert_allclose(
        r2[1:] ** 2, c**4 * r2[:-1] ** 2 + 2 * c**2 * eta**2 * g2 + eta**4 * g2**2 / r2[:-1] ** 2, rtol=1e-12
    )
    rho, eta_r, G0 = si.rmsprop_mapping(eta=eta, lam=lam, r0_sq=r2[0])
    np.testing.assert_allclose(rho, c**4, rtol=1e-15)
    sphere = jax.jit(lambda rho: si.sphere_rmsprop(loss, q0, n, eta=eta_r, rho=rho, G0=G0).u)
    u, foil = sphere(rho), sphere(1 - 10 * (1 - rho))  # the mapped discount and a wrong one
    unit = path / jnp.sqrt(r2)[:, None]
    angle, foil_angle = (np.max(np.arccos(np.clip(np.sum(x * unit, axis=1), -1, 1))) for x in (u, foil))
    # the first step is exact (same direction step), the rest differs only by the eta^4 g^4 / r^4 term
    np.testing.assert_allclose(u[1], unit[1], atol=1e-14)
    assert angle < 1e-4 and foil_angle > 10 * angle


def test_scaled_initialization_is_rescaled_hyperparameters():
    loss, q0, n = scale_inv, jnp.array([0.5, 1.0, -0.3]), 200
    hb = jax.jit(lambda q, eta, beta, lam: dc.run(dc.heavy_ball(eta, beta=beta, lam=lam), loss, q, n).params)
    for alpha, beta in [(3.0, 0.0), (0.5, 0.9)]:
        eta, lam = 0.1, 1e-3
        eta2, lam2 = si.rescaled_hparams(alpha, eta=eta, lam=lam)
        np.testing.assert_allclose(
            hb(alpha * q0, eta, beta, lam), alpha * hb(q0, eta2, beta, lam2), rtol=1e-12, atol=1e-14
        )


# ----------------------------------------------------------------------------- SDE norm and clock (Li, Wang & Yu)
@pytest.mark.parametrize("eta, lam, c2, r0", [(0.01, 0.1, 2.0, 1.0), (0.003, 0.05, 0.5, 1.7)])
def test_sde_norm4_solves_its_ode_and_has_the_equilibrium(eta, lam, c2, r0):
    ks = jnp.linspace(0.0, 3000.0, 7)
    m = si.sde_norm4(ks, eta=eta, lam=lam, c2=c2, r0=r0)
    dm = jax.vmap(jax.grad(lambda k: si.sde_norm4(k, eta=eta, lam=lam, c2=c2, r0=r0)))(ks)
    np.testing.assert_allclose(dm, -4 * eta * lam * m + 2 * eta**2 * c2, rtol=1e-10, atol=1e-15)
    assert float(m[0]) == pytest.approx(r0**4)
    assert float(si.sde_norm4(1e7, eta=eta, lam=lam, c2=c2, r0=r0)) == pytest.approx(eta * c2 / (2 * lam))


def test_sde_norm4_without_decay_grows_linearly_and_momentum_rescales_eta():
    assert float(si.sde_norm4(500, eta=0.01, lam=0.0, c2=2.0)) == pytest.approx(1 + 2 * 1e-4 * 2 * 500)
    assert float(si.sde_norm4(1e9, eta=0.01, lam=0.1, c2=2.0, beta=0.5)) == pytest.approx(
        float(si.equilibrium_norm4(eta=0.01, lam=0.1, grad2=2.0, beta=0.5, coherent=False))
    )


def test_clock_is_eq12_its_integral_form_and_its_inverse():
    eta, lam = 0.01, 0.05
    k = 3000.0
    eq12 = 0.5 * math.log(1 + (math.exp(4 * eta * lam * k) - 1) * eta / (2 * lam))
    assert float(si.clock(k, eta=eta, lam=lam)) == pytest.approx(eq12, rel=1e-13)
    integral, _ = integrate.quad(lambda s: eta**2 / float(si.sde_norm4(s, eta=eta, lam=lam)), 0, k)
    assert float(si.clock(k, eta=eta, lam=lam)) == pytest.approx(integral, rel=1e-9)
    for c2, r0 in ((1.0, 1.0), (2.0, 0.5)):
        T = si.clock(k, eta=eta, lam=lam, c2=c2, r0=r0)
        assert float(si.clock_inverse(T, eta=eta, lam=lam, c2=c2, r0=r0)) == pytest.approx(k, rel=1e-12)
    # the paper's Theorem 5.5 step count, and its large-T form
    T = 4.0
    exact = math.log(2 * lam / eta * (math.exp(2 * T) - 1) + 1) / (4 * eta * lam)
    assert float(si.clock_inverse(T, eta=eta, lam=lam)) == pytest.approx(exact, rel=1e-13)
    approx = (math.log(2 * lam / eta) + 2 * T) / (4 * eta * lam)
    assert float(si.clock_inverse(T, eta=eta, lam=lam)) == pytest.approx(approx, rel=1e-3)


def test_clock_without_decay_and_the_no_decay_equivalent_steps():
    eta = 0.01
    assert float(si.clock(1e4, eta=eta, lam=0.0, c2=2.0)) == pytest.approx(
        0.5 * math.log(1 + 2 * eta**2 * 2 * 1e4)
    )
    assert float(si.clock(1e4, eta=eta, lam=1e-12, c2=2.0)) == pytest.approx(
        float(si.clock(1e4, eta=eta, lam=0.0, c2=2.0)), rel=1e-6
    )
    # k steps with decay = (e^{4ηλk} − 1)/(4ηλ) steps without (the discrete face of Theorem 3.2)
    lam, k = 0.1, 1000.0
    kp = si.clock_inverse(si.clock(k, eta=eta, lam=lam, c2=2.0), eta=eta, lam=0.0, c2=2.0)
    assert float(kp) == pytest.approx(math.expm1(4 * eta * lam * k) / (4 * eta * lam), rel=1e-10)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: si.clock(10, eta=-0.1, lam=0.1), "eta must be > 0"),
        (lambda: si.clock(10, eta=0.1, lam=-1.0), "lam must be >= 0"),
        (lambda: si.sde_norm4(10, eta=0.1, lam=0.1, beta=1.0), r"beta must be in \[0, 1\)"),
        (lambda: si.sde_norm4(10, eta=0.1, lam=0.1, c2=0.0), "c2 must be > 0"),
        (lambda: si.clock_inverse(-1.0, eta=0.1, lam=0.1), "T must be >= 0"),
        (lambda: si.equilibrium_angle(eta=-0.1, lam=0.01), "eta must be"),
        (lambda: si.rescaled_hparams(0.0, eta=0.1, lam=0.01), "alpha must be"),
        (lambda: si.sphere_rmsprop(scale_inv, jnp.ones(3), 0, eta=0.1, rho=0.9, G0=1.0), "n_steps"),
    ],
)
def test_invalid_inputs_raise_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_hyperparameters_are_keyword_only():
    """Issue 18: every hyper-parameter is a keyword; an old positional call fails loudly."""
    with pytest.raises(TypeError):
        si.clock(10, 0.1, 0.1)
    with pytest.raises(TypeError):
        si.norm_equilibrium(0.1, 0.1)
    with pytest.raises(TypeError):
        si.norm_law(jnp.ones(3), 1.0, 0.1, 0.1)
