"""Vector fields of the modified flows, the closed-form log flow, and the order of agreement with GD.

The integrators are tested in tests/test_integration.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- counter terms
def test_counter_terms_of_linear_field(rng, make_spd):
    # L = 1/2 th^T A th, g = J th with J = A + lam I: xi_alpha = J^(alpha+2) th / (alpha+2),
    # the Taylor coefficients of -(1/eta) log(I - eta J) th.
    A = make_spd(rng, [0.3, 1.0, 2.5])
    lam = 0.2
    J = A + lam * np.eye(3)
    theta = rng.standard_normal(3)
    prob = dc.quadratic(A)
    xis = dc.counter_terms(prob.loss, 3, lam=lam)
    assert len(xis) == 3
    values = jax.jit(lambda th: [xi(th) for xi in xis])(jnp.asarray(theta))
    for alpha, val in enumerate(values):
        expected = np.linalg.matrix_power(J, alpha + 2) @ theta / (alpha + 2)
        np.testing.assert_allclose(np.asarray(val), expected, rtol=1e-12, atol=1e-13)


def _bilinear_derivatives(theta, x=2.0, y=1.5):
    """Gradient, Hessian and third-derivative tensor of 1/2 (y - x th1 th2)^2, by hand."""
    t1, t2 = theta
    r = y - x * t1 * t2
    grad = -x * r * np.array([t2, t1])
    hess = np.array([[x**2 * t2**2, 2 * x**2 * t1 * t2 - x * y], [2 * x**2 * t1 * t2 - x * y, x**2 * t1**2]])
    T = np.zeros((2, 2, 2))  # T[i, j, k] = d H[i, j] / d th_k
    T[0, 0, 1] = 2 * x**2 * t2
    T[0, 1, 0] = T[1, 0, 0] = 2 * x**2 * t2
    T[0, 1, 1] = T[1, 0, 1] = 2 * x**2 * t1
    T[1, 1, 0] = 2 * x**2 * t1
    return grad, hess, T


def test_counter_terms_of_bilinear_model_match_closed_forms():
    prob = dc.bilinear()
    lam = 0.1
    theta = np.array([0.8, -0.6])
    grad, hess, T = _bilinear_derivatives(theta)
    g = grad + lam * theta
    J = hess + lam * np.eye(2)
    third = np.einsum("ijk,j,k->i", T, g, g)
    xi0_expected = 0.5 * J @ g
    xi1_expected = J @ J @ g / 3 + third / 12

    xis = dc.counter_terms(prob.loss, 2, lam=lam)

    @jax.jit
    def evaluate(th):
        # the hand-written third derivative, checked against autodiff on the way
        T_ad = jax.jacfwd(jax.hessian(prob.loss))(th)
        return xis[0](th), xis[1](th), T_ad

    xi0, xi1, T_ad = evaluate(jnp.asarray(theta))
    np.testing.assert_allclose(np.asarray(T_ad), T, rtol=1e-13, atol=1e-14)
    assert np.linalg.norm(third) > 0.1  # the third-derivative term matters at this point
    np.testing.assert_allclose(np.asarray(xi0), xi0_expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(xi1), xi1_expected, rtol=1e-12, atol=1e-14)
    # the alternative closed form xi_0 = 1/4 grad |g|^2 = 1/2 J g: ties xi_0 to the modified loss
    tilde = dc.modified_loss(prob.loss, eta=1.0, lam=lam)  # L + lam/2 |th|^2 + 1/4 |g|^2
    grad_tilde = np.asarray(jax.jit(jax.grad(tilde))(jnp.asarray(theta)))
    np.testing.assert_allclose(grad_tilde - g, xi0_expected, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- fields
def dict_loss(p):
    return jnp.sum(jnp.cos(p["a"]) * p["b"][0]) + 0.25 * jnp.sum(p["a"] ** 4) + p["b"][1] ** 2 * jnp.sum(p["a"])


DICT_POINT = {"a": jnp.array([0.4, -1.3]), "b": jnp.array([0.7, 1.2])}


def test_modified_field_order1_is_minus_gradient_of_modified_loss_on_pytree():
    eta, lam = 0.1, 0.3
    field = dc.modified_field(dict_loss, eta=eta, order=1, lam=lam)
    tilde = dc.modified_loss(dict_loss, eta=eta, lam=lam)
    f, mg = jax.jit(lambda p: (field(p), jax.tree_util.tree_map(jnp.negative, jax.grad(tilde)(p))))(DICT_POINT)
    for key in ("a", "b"):
        np.testing.assert_allclose(np.asarray(f[key]), np.asarray(mg[key]), rtol=1e-12, atol=1e-14)


def test_modified_loss_closed_form():
    eta, lam = 0.1, 0.3
    th = DICT_POINT
    gl = jax.jit(jax.grad(dict_loss))(th)
    g = jax.tree_util.tree_map(lambda a, t: a + lam * t, gl, th)
    sq = lambda tree: sum(float(jnp.sum(x**2)) for x in jax.tree_util.tree_leaves(tree))  # noqa: E731
    expected = float(dict_loss(th)) + 0.5 * lam * sq(th) + 0.25 * eta * sq(g)
    assert float(jax.jit(dc.modified_loss(dict_loss, eta=eta, lam=lam))(th)) == pytest.approx(expected, rel=1e-13)


def test_gradient_field_and_order0_field_on_bilinear(rng):
    x, y, lam = 2.0, 1.5, 0.25
    prob = dc.bilinear(x=x, y=y)
    gf = dc.gradient_field(prob.loss, lam=lam)
    m0 = dc.modified_field(prob.loss, eta=0.3, order=0, lam=lam)
    fields = jax.jit(lambda th: (gf(th), m0(th)))
    for theta in rng.standard_normal((3, 2)):
        r = y - x * theta[0] * theta[1]
        expected = -(-x * r * np.array([theta[1], theta[0]]) + lam * theta)
        a, b = fields(jnp.asarray(theta))
        np.testing.assert_allclose(np.asarray(a), expected, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(np.asarray(b), expected, rtol=1e-13, atol=1e-14)


def test_modified_field_order2_on_linear_field(rng, make_spd):
    A = make_spd(rng, [0.5, 2.0])
    eta, lam = 0.2, 0.1
    J = A + lam * np.eye(2)
    theta = rng.standard_normal(2)
    field = dc.modified_field(dc.quadratic(A).loss, eta=eta, order=2, lam=lam)
    expected = -(J + eta * J @ J / 2 + eta**2 * J @ J @ J / 3) @ theta
    np.testing.assert_allclose(np.asarray(jax.jit(field)(jnp.asarray(theta))), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- log flow
def test_log_flow_passes_through_gd_iterates_and_half_steps(rng, make_spd):
    A = make_spd(rng, [0.2, 0.9, 1.7, 3.0])
    lam = 0.1  # mu_max = 3.1: eta * mu_max <= 0.93 < 1 for every eta below
    J = A + lam * np.eye(4)
    w, V = np.linalg.eigh(J)
    theta0 = rng.standard_normal(4)
    ks = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0])  # in units of eta
    flow_at = jax.jit(lambda eta: dc.eom.log_flow_quadratic(A, theta0, eta * ks, eta=eta, lam=lam))
    for eta in (0.05, 0.15, 0.3):
        flow = np.asarray(flow_at(eta))
        assert flow.shape == (len(ks), 4)
        M = np.eye(4) - eta * J
        for k, row in zip(ks, flow):
            if k == int(k):  # at t = k eta: the GD iterate (I - eta J)^k theta0
                np.testing.assert_allclose(row, np.linalg.matrix_power(M, int(k)) @ theta0, atol=1e-12)
            else:  # at t = eta/2: the square root of one GD step, (I - eta J)^(1/2) theta0
                half = (V * np.sqrt(1 - eta * w)[None, :]) @ V.T
                np.testing.assert_allclose(row, half @ theta0, atol=1e-12)


@pytest.mark.parametrize(
    "diag,eta,lam",
    [
        ((1.0, 2.0), 0.5, 0.0),  # eta * mu_max = 1 exactly
        ((1.0, 2.0), 0.8, 0.0),  # 1.6
        ((1.0, 2.0), 0.4, 0.5),  # 0.4 * (2 + 0.5) = 1: only with the weight decay
    ],
)
def test_log_flow_raises_when_real_log_does_not_exist(diag, eta, lam):
    with pytest.raises(ValueError, match="eta \\* mu"):
        dc.eom.log_flow_quadratic(np.diag(diag), np.ones(2), [0.0, eta], eta=eta, lam=lam)


def test_log_flow_allows_same_eta_without_weight_decay():
    out = dc.eom.log_flow_quadratic(np.diag([1.0, 2.0]), np.ones(2), [0.4], eta=0.4, lam=0.0)
    np.testing.assert_allclose(np.asarray(out[0]), [0.6, 0.2], rtol=1e-13)


# ----------------------------------------------------------------------------- global order
def _gd_bilinear(eta, T=1.0, x=2.0, y=1.5, theta0=(1.0, 0.25)):
    th = np.array(theta0, dtype=float)
    for _ in range(int(round(T / eta))):
        r = y - x * th[0] * th[1]
        th = th - eta * (-x * r * np.array([th[1], th[0]]))
    return th


def test_global_order_of_modified_flows_against_gd_on_bilinear():
    prob = dc.bilinear()
    etas = np.array([1 / 32, 1 / 64])
    ts = np.array([0.0, 1.0])

    @jax.jit
    def flows_at_T(eta):
        out = []
        for order in (0, 1):
            field = dc.modified_field(prob.loss, eta=eta, order=order)
            out.append(dc.integrate(field, prob.theta0, ts, dt=eta / 16).ys[-1])
        return jnp.stack(out)

    errors = np.array(
        [np.linalg.norm(np.asarray(flows_at_T(eta)) - _gd_bilinear(eta)[None, :], axis=1) for eta in etas]
    )  # shape (eta, order)
    slopes = np.log2(errors[0] / errors[1])
    dc.check("order-0 (gradient flow) error slope", slopes[0], 1.0, atol=0.15, quiet=True)
    dc.check("order-1 (IGR flow) error slope", slopes[1], 2.0, atol=0.15, quiet=True)
    # and the first-order flow is closer to GD than gradient flow is
    assert np.all(errors[:, 1] < errors[:, 0])


def test_log_flow_of_an_integer_matrix_is_that_of_the_same_float_matrix():
    """An integer A used to truncate the save times to integers (θ₀ at every t < 1)."""
    ts = [0.0, 0.25, 0.5]
    as_int = dc.eom.log_flow_quadratic([[2, 0], [0, 1]], [1, 1], ts, eta=0.1)
    as_float = dc.eom.log_flow_quadratic(np.diag([2.0, 1.0]), np.ones(2), ts, eta=0.1)
    np.testing.assert_allclose(np.asarray(as_int), np.asarray(as_float), rtol=1e-14)
    # (1 − ημ)^{t/η} at t = 0.25
    np.testing.assert_allclose(np.asarray(as_float[1]), [0.8**2.5, 0.9**2.5], rtol=1e-12)


# --------------------------------------------------- closed forms where two chapters' models coincide
# (from the former tests/test_consistency.py; the functions now live in dc.eom, dc.noether and
# dc.scale_invariance, and each still models its own paper, so these are checks that the closed
# forms agree where the models describe the same thing: no momentum, leading order)
GRID = [(0.1, 0.01), (0.05, 0.2), (0.3, 0.5), (1.0, 0.1)]


@pytest.mark.parametrize("eta,lam", GRID)
def test_translation_decay_of_heavy_ball_at_beta_0_is_gd_mean_decay(eta, lam):
    """Noether's exact heavy-ball rate of a translation charge, at β = 0, is the EoM's -ln(1 - ηλ)."""
    rates = dc.noether.translation_rates(eta=eta, beta=0.0, lam=lam)
    assert float(rates.exact) == pytest.approx(-np.log1p(-eta * lam), rel=1e-12)
    assert float(rates.exact) == pytest.approx(float(dc.eom.mean_decay_rate(eta=eta, lam=lam)), rel=1e-12)
    assert float(rates.gradient_flow) == pytest.approx(float(dc.eom.mean_decay_rate(eta=eta, lam=lam, order=0)),
                                                       rel=1e-14)
    # Eq. (3) is correct through (ηλ)², as is the EoM with one counter term: they agree to O((ηλ)³)
    x = eta * lam
    assert abs(float(rates.eq3) - float(dc.eom.mean_decay_rate(eta=eta, lam=lam, order=1))) < 2 * x**3


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("eta,lam", GRID[:3])
def test_equilibrium_angle_is_the_chord_of_the_exact_heavy_ball_equilibrium(eta, lam, beta):
    """√(2ηλ/(1+β)) is the chord of the exact heavy-ball equilibrium, cos Δ = 1 - ηλ/(1+β)."""
    si = dc.scale_invariance
    cos_delta = float(si.norm_equilibrium(eta=eta, beta=beta, lam=lam, c=1.0, model="gd").cos_delta)
    assert cos_delta == pytest.approx(1 - eta * lam / (1 + beta), rel=1e-12)
    assert 2 * (1 - cos_delta) == pytest.approx(float(si.equilibrium_angle(eta=eta, beta=beta, lam=lam)) ** 2,
                                                rel=1e-12)


@pytest.mark.parametrize("eta,lam,c", [(0.1, 0.01, 1.0), (0.02, 0.1, 0.7), (0.4, 0.05, 2.0)])
def test_equilibrium_norms_agree_at_leading_order(eta, lam, c):
    """Tanaka–Kunin's r⁴ (β = 0), the leading-order model and the SDE equilibrium are one formula, ηc²/(2λ)."""
    si = dc.scale_invariance
    leading = float(si.norm_equilibrium(eta=eta, lam=lam, c=c, model="leading").r4)
    assert leading == pytest.approx(eta * c**2 / (2 * lam), rel=1e-14)
    assert float(si.equilibrium_norm4(eta=eta, lam=lam, grad2=c**2)) == pytest.approx(leading, rel=1e-14)
    assert float(si.equilibrium_norm4(eta=eta, lam=lam, grad2=c**2, coherent=False)) == pytest.approx(leading, rel=1e-14)
    # the SDE's ‖x‖⁴ → ηC/(2λ) as k → ∞ (C = tr Σ at unit norm plays the role of c²)
    assert float(si.sde_norm4(10 / (eta * lam), eta=eta, lam=lam, c2=c**2, r0=1.0)) == pytest.approx(leading, rel=1e-6)
    # and the exact GD equilibrium differs from it at relative order ηλ, with the sign the EoM chapter derives
    exact = float(si.norm_equilibrium(eta=eta, lam=lam, c=c, model="gd").r4)
    assert exact / leading - 1 == pytest.approx(eta * lam / 2, rel=0.1 + eta * lam)
