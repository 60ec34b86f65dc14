"""Noether's learning dynamics (Tanaka & Kunin 2021): math facts that a wrong sign or factor breaks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- losses with symmetries
def lse(q):
    """Translation-invariant along (1, 1, 1, 1): a softmax cross-entropy on four logits."""
    return jax.nn.logsumexp(q) - q[0]


def scale_inv(q):
    """Scale-invariant (degree-0 homogeneous) loss on R^3."""
    u = q / jnp.linalg.norm(q)
    return jnp.sin(2 * u[0] - u[1]) + 0.5 * (u[2] - 0.3) ** 2


def radial(q):
    """Rotation-invariant loss on R^2."""
    r2 = q @ q
    return 0.25 * (r2 - 1) ** 2 + 0.1 * r2


bilinear = dc.bilinear().loss  # rescale symmetry (q1, q2) -> ((1+s) q1, q2/(1+s))
A2 = jnp.array([[0.0, -1.0], [1.0, 0.0]])
N4 = jnp.full(4, 0.5)  # unit vector along (1, 1, 1, 1)

SYMS = {
    "translation": (dc.noether.translation_symmetry(N4), lse, jnp.array([1.0, -0.3, 0.7, 2.0])),
    "scale": (dc.noether.scale_symmetry(), scale_inv, jnp.array([0.5, 1.0, -0.3])),
    "rescale": (dc.noether.rescale_symmetry(jnp.array([1.0, -1.0])), bilinear, jnp.array([1.0, 0.25])),
    "rotation": (dc.noether.rotation_symmetry(A2), radial, jnp.array([1.5, 0.2])),
}


# ----------------------------------------------------------------------------- generators, KSB
def test_generators_have_their_closed_forms():
    q4, q2 = jnp.array([0.3, -1.0, 2.0, 0.5]), jnp.array([0.7, -1.2])
    out = jax.jit(
        lambda: (
            dc.noether.translation_symmetry(N4).generator(q4),
            dc.noether.scale_symmetry().generator(q4),
            dc.noether.rescale_symmetry(jnp.array([1.0, -1.0])).generator(q2),
            SYMS["rotation"][0].generator(q2),
        )
    )()
    for got, want in zip(out, (N4, q4, jnp.array([0.7, 1.2]), A2 @ q2)):
        np.testing.assert_allclose(got, want, atol=1e-15)


def test_rotation_family_is_orthogonal_with_generator_aq():
    sym, q = dc.noether.rotation_symmetry(A2), jnp.array([0.6, -0.8])
    moved = jax.jit(lambda s: sym.transform(q, s))(1.7)
    np.testing.assert_allclose(jnp.linalg.norm(moved), 1.0, rtol=1e-14)
    assert float(jnp.linalg.norm(moved - q)) > 0.5


@pytest.mark.parametrize("name", list(SYMS))
def test_losses_have_their_symmetry_and_break_others(name):
    sym, loss, q = SYMS[name]
    # a loss without the symmetry gives a clearly non-zero residual
    other = (lambda x: jnp.sum((x - 0.3) ** 2)) if name != "rotation" else (lambda x: x[0])
    res, res_other = jax.jit(lambda: (dc.noether.symmetry_residual(loss, sym, q), dc.noether.symmetry_residual(other, sym, q)))()
    assert abs(float(res)) < 1e-13 and abs(float(res_other)) > 1e-2


def test_ksb_euclidean_values():
    m, qd = 0.37, jnp.array([0.9, 0.1, -0.4, 0.2])
    T, q = dc.noether.euclidean_kinetic(m), jnp.array([0.3, -1.0, 2.0, 0.5])
    A4 = np.zeros((4, 4))
    A4[0, 1], A4[1, 0], A4[2, 3], A4[3, 2] = -1.0, 1.0, 0.5, -0.5
    syms = [
        dc.noether.translation_symmetry(N4),
        dc.noether.rotation_symmetry(A4),
        dc.noether.scale_symmetry(),
        dc.noether.rescale_symmetry(jnp.array([1.0, 1.0, -1.0, -1.0])),
    ]
    trans, rot, scale, resc = jax.jit(lambda: [dc.noether.ksb_term(T, s, q, qd) for s in syms])()
    assert abs(float(trans)) < 1e-15 and abs(float(rot)) < 1e-15
    np.testing.assert_allclose(scale, m * qd @ qd, rtol=1e-14)  # 0.3774
    np.testing.assert_allclose(resc, 0.2294, rtol=1e-13)


def test_bregman_kinetic_reduces_to_euclidean_and_breaks_translation_otherwise():
    q, qd, alpha = jnp.array([0.3, -0.4, 0.8]), jnp.array([0.2, 0.5, -0.1]), 0.4
    te = dc.noether.bregman_kinetic(lambda x: 0.5 * x @ x, alpha)
    tc = dc.noether.bregman_kinetic(lambda x: jnp.sum(jnp.cosh(x)), alpha)
    sym = dc.noether.translation_symmetry(jnp.ones(3) / jnp.sqrt(3))
    te_val, tE_val, ksb_c, ksb_e = jax.jit(
        lambda: (
            te(q, qd),
            dc.noether.euclidean_kinetic(math.exp(-alpha))(q, qd),
            dc.noether.ksb_term(tc, sym, q, qd),
            dc.noether.ksb_term(te, sym, q, qd),
        )
    )()
    np.testing.assert_allclose(te_val, tE_val, rtol=1e-14)
    # the metric diag(cosh q) depends on q: translations are kinetically broken
    assert abs(float(ksb_c)) > 1e-3 and abs(float(ksb_e)) < 1e-15


# ----------------------------------------------------------------------------- NLD (Eq. 11)
def _cosh_setup():
    h = lambda x: jnp.sum(jnp.cosh(x))  # noqa: E731
    W = jnp.array([[1.0, 2.0, -0.5], [0.3, -1.0, 0.8]])

    def f(q):
        u = q / jnp.linalg.norm(q)
        return jnp.sum(jnp.sin(W @ u)) + 0.5 * (u[0] - 0.2) ** 2

    return h, f


def test_nld_holds_pointwise_along_the_euler_lagrange_field():
    h, f = _cosh_setup()
    lam = 0.3  # weight decay in the potential: its term is part of the identity
    alpha, beta_t, gdot = 0.3, 0.2, 0.7
    sym = dc.noether.scale_symmetry()
    field = dc.noether.bregman_field(f, h, jnp.arcsinh, alpha=alpha, beta_t=beta_t, gamma_dot=gdot, lam=lam)

    def terms(state):
        return dc.noether.nld_terms(sym, state[0], field(state)[0], h=h, alpha=alpha, beta_t=beta_t, gamma_dot=gdot, lam=lam)

    @jax.jit
    @jax.vmap
    def check(state):
        dcharge = jax.jvp(lambda s: terms(s).charge, (state,), (field(state),))[1]
        t = terms(state)
        return dcharge, t.rate, t.metric

    states = tuple(jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 3))))
    dcharge, rate, metric = check(states)
    np.testing.assert_allclose(dcharge, rate, rtol=1e-12, atol=1e-13)
    assert float(jnp.min(jnp.abs(metric))) > 1e-3  # the metric term is needed: without it the identity fails


def test_bregman_field_with_euclidean_h_is_eq3():
    eta, beta, lam = 0.1, 0.6, 0.05
    m, mu = dc.noether.mass_damping(eta=eta, beta=beta)
    bf = dc.noether.bregman_field(
        bilinear, lambda x: 0.5 * x @ x, lambda z: z, alpha=-math.log(m), beta_t=math.log(m), gamma_dot=mu / m, lam=lam
    )
    eq3 = dc.noether.damped_particle_field(bilinear, eta=eta, beta=beta, lam=lam)
    q, v = jnp.array([0.8, -0.3]), jnp.array([0.2, 0.5])
    (qdot, zdot), vdot = jax.jit(lambda: (bf((q, q + m * v)), eq3((q, v))[1]))()  # z = q + e^{-alpha} v
    np.testing.assert_allclose(qdot, v, rtol=1e-13)
    np.testing.assert_allclose(zdot, v + m * vdot, rtol=1e-13)  # z' = q' + m v'


@pytest.mark.parametrize("name", ["translation", "scale", "rescale"])
def test_gradient_flow_conserves_and_weight_decay_damps(name):
    sym, loss, q = SYMS[name]
    factor = 1 if name == "translation" else 2  # d<q,n>/dt = -lam <q,n>;  d<q,Sq>/dt = -2 lam <q,Sq>

    @jax.jit
    def rate(lam):
        return jax.jvp(sym.conserved, (q,), (dc.gradient_field(loss, lam=lam)(q),))[1], sym.conserved(q)

    for lam in (0.0, 0.2):
        r, value = rate(lam)
        np.testing.assert_allclose(r, -factor * lam * value, atol=1e-14)


# ----------------------------------------------------------------------------- exact discrete charges
@pytest.mark.parametrize("name", ["translation", "scale", "rescale"])
def test_gd_charge_step_is_exact_along_gd(name):
    sym, loss, q0 = SYMS[name]
    eta, lam, n = 0.1, 0.03, 40

    @jax.jit
    def compute():
        path = dc.run(dc.gd(eta, lam=lam), loss, q0, n).params
        grads = jax.vmap(jax.grad(loss))(path[:-1])
        pred = jax.vmap(lambda q, g: dc.noether.gd_charge_step(sym, sym.conserved(q), g, eta=eta, lam=lam))(path[:-1], grads)
        return path, pred, jax.vmap(sym.conserved)(path)

    path, pred, values = compute()
    meas = values[1:]
    np.testing.assert_allclose(pred, meas, rtol=1e-12, atol=1e-14)
    if name != "translation":  # the eta^2 kinetic term is what moves it: without it the formula fails
        assert np.max(np.abs(meas - (1 - eta * lam) ** 2 * values[:-1])) > 1e-5


@pytest.mark.parametrize("name", list(SYMS))
def test_discrete_nld_is_exact_for_heavy_ball(name):
    sym, loss, q0 = SYMS[name]
    eta, beta, lam, n = 0.05, 0.8, 0.02, 60
    opt = dc.heavy_ball(eta, beta=beta, lam=lam)
    if name == "rotation":  # from rest the rotation charge is zero forever: give the buffer a push
        opt = dc.with_momentum(opt, jnp.array([0.0, 2.0]))
    J, K, W = jax.jit(lambda: dc.noether.discrete_charges(sym, dc.run(opt, loss, q0, n).params))()
    pred = dc.noether.discrete_nld(J[:-1], K[:-1], W[1:], eta=eta, beta=beta, lam=lam)
    np.testing.assert_allclose(pred, J[1:], atol=1e-13 * float(jnp.max(jnp.abs(J))) + 1e-16)
    if name in ("translation", "rotation"):
        assert float(jnp.max(jnp.abs(K))) < 1e-15
    if name == "rotation":  # decays by exactly beta per step (W = 0: weight decay is rotation-invariant)
        np.testing.assert_allclose(J[1:] / J[:-1], beta, rtol=1e-9)
    else:  # started at rest: J_0 = -eta lam W_0 (no gradient component along the generator)
        np.testing.assert_allclose(J[0], -eta * lam * W[0], rtol=1e-12)


def test_charge_rate_is_the_continuum_limit_of_the_gd_step():
    sym, loss, q = SYMS["rescale"]
    eta, lam, beta = 0.01, 0.3, 0.5

    @jax.jit
    def compute():
        g = jax.grad(loss)(q)
        discrete = (dc.noether.gd_charge_step(sym, sym.conserved(q), g, eta=eta, lam=lam) - sym.conserved(q)) / eta
        rates = dc.noether.charge_rate(sym, q, g, eta=eta, lam=lam), dc.noether.charge_rate(sym, q, g, eta=eta, beta=beta, lam=lam)
        return discrete, rates, sym.conserved(q), sym.conserved(g)

    discrete, (rate0, rate_b), value, kinetic = compute()
    # (I' - I)/eta = -2 lam I + eta <g,Sg> + eta lam^2 I, and the rate is -2 lam I + eta <g,Sg>
    np.testing.assert_allclose(discrete - rate0, eta * lam**2 * value, rtol=1e-9)
    # momentum: 2m/mu^3 = eta (1+beta)/(1-beta)^3 for the kinetic source, 2 lam / mu for the decay
    np.testing.assert_allclose(rate_b, -2 * lam * value / 0.5 + eta * 1.5 / 0.125 * kinetic, rtol=1e-13)


def test_translation_rates_exact_and_orders():
    eta, beta, lam, n = 0.1, 0.9, 0.01, 800
    C = jax.jit(lambda: dc.run(dc.heavy_ball(eta, beta=beta, lam=lam), lse, jnp.array([1.0, -0.3, 0.7, 2.0]), n).params @ N4)()
    measured = (jnp.log(jnp.abs(C[n // 2])) - jnp.log(jnp.abs(C[n]))) / (n // 2)
    rates = dc.noether.translation_rates(eta=eta, beta=beta, lam=lam)
    np.testing.assert_allclose(measured, rates.exact, rtol=1e-10)
    for beta in (0.0, 0.5, 0.9):
        x, mu = 1e-4, 1 - beta
        r = dc.noether.translation_rates(eta=0.1, beta=beta, lam=x / 0.1)
        assert abs(float(r.eq3 / r.exact - 1)) <= x**2 / (3 * mu**2)  # Eq. (3): second order right
        np.testing.assert_allclose(1 - r.gradient_flow / r.exact, x * (1 + beta) / (2 * mu**2), rtol=1e-2)


# ----------------------------------------------------------------------------- Eq. 3 and optimizers
def test_eq3_with_matched_velocity_is_second_order():
    beta, T = 0.5, 0.5  # effective time T / (1 - beta) = 1

    @jax.jit
    def errors(eta):
        n = jnp.round(T / eta).astype(int)
        hb = dc.run(dc.heavy_ball(eta, beta=beta), bilinear, dc.bilinear().theta0, 128).params[n]
        field = dc.noether.damped_particle_field(bilinear, eta=eta, beta=beta)
        q0 = dc.bilinear().theta0
        out = []
        for v0 in (dc.noether.matched_velocity(bilinear, q0, beta=beta), jnp.zeros(2)):
            y = dc.integrate(field, (q0, v0), jnp.array([0.0, T]), dt=eta / 8, max_steps=1024).ys[0][-1]
            out.append(jnp.linalg.norm(y - hb))
        return jnp.stack(out)

    etas = [T / 32, T / 64, T / 128]
    errs = np.array([errors(e) for e in etas])
    assert 1.8 < dc.fit_slope(etas, errs[:, 0]) < 2.3  # matched initial velocity: O(eta^2)
    assert errs[-1, 1] > 10 * errs[-1, 0]  # from rest: an O(eta) error that does not go away


def test_heavy_ball_decoupled_weight_decay_matches_its_recursion():
    A = jnp.diag(jnp.array([1.0, 3.0]))
    prob = dc.quadratic(A, theta0=jnp.array([1.0, -2.0]))
    eta, beta, lam, n = 0.1, 0.7, 0.2, 12

    @jax.jit
    def run(beta):
        return [
            dc.run(dc.heavy_ball(eta, beta=beta, lam=lam, decoupled=d), prob.loss, prob.theta0, n).params for d in (True, False)
        ]

    traj, coupled = run(beta)
    th, m = np.array([1.0, -2.0]), np.zeros(2)
    expected = [th]
    for _ in range(n):
        m = beta * m + np.diag([1.0, 3.0]) @ th
        th = th - eta * m - eta * lam * th
        expected.append(th)
    np.testing.assert_allclose(traj, np.array(expected), atol=1e-13)
    assert float(jnp.max(jnp.abs(coupled - traj))) > 1e-3  # the two really differ with momentum
    same = run(0.0)
    np.testing.assert_allclose(same[0], same[1], atol=1e-14)  # and agree without it


def test_decoupled_decay_shrinks_a_translation_charge_by_exactly_one_minus_eta_lam():
    eta, beta, lam, n = 0.1, 0.9, 0.01, 50
    C = jax.jit(
        lambda: dc.run(dc.heavy_ball(eta, beta=beta, lam=lam, decoupled=True), lse, jnp.array([1.0, -0.3, 0.7, 2.0]), n).params
        @ N4
    )()
    np.testing.assert_allclose(C[1:] / C[:-1], 1 - eta * lam, rtol=1e-12)


def test_with_momentum_sets_the_first_step():
    eta, beta, lam, b0 = 0.05, 0.9, 0.1, jnp.array([0.0, 2.0])
    q0 = jnp.array([1.5, 0.0])
    q1, g0 = jax.jit(
        lambda: (
            dc.run(dc.with_momentum(dc.heavy_ball(eta, beta=beta, lam=lam), b0), radial, q0, 1).params[1],
            jax.grad(radial)(q0),
        )
    )()
    np.testing.assert_allclose(q1, q0 - eta * (beta * b0 + g0 + lam * q0), atol=1e-15)
    state = dc.with_momentum(optax.sgd(0.1, momentum=0.5), b0).init(q0)
    np.testing.assert_allclose(jax.tree_util.tree_leaves(state)[0], b0)


# ----------------------------------------------------------------------------- validation
def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="skew"):
        dc.noether.rotation_symmetry(jnp.eye(2))
    with pytest.raises(ValueError, match="conserved"):
        dc.noether.gd_charge_step(dc.noether.rotation_symmetry(A2), 1.0, jnp.ones(2), eta=0.1)
    with pytest.raises(ValueError, match="beta must be"):
        dc.noether.damped_particle_field(bilinear, eta=0.1, beta=1.0)
    # the checks of equilibrium_angle, rescaled_hparams and sphere_rmsprop: tests/test_scale_invariance.py
