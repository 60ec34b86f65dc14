"""The principal flow (Rosca et al. 2023) and the heavy-ball log-flow (dc.principal).

DAL is tested with the optimizers, sharpness tracking and hvp_fd with the curvature, the
integrators in tests/test_integration.py.
"""

import re

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla

import dyncore as dc

A2 = np.diag([2.0, 0.02])  # paper's quadratic: E = θᵀ diag(1, 0.01) θ, Hessian diag(2, 0.02)
TH2 = np.array([-0.35, -0.2])


def _gd_quadratic(A, theta0, eta, n, lam=0.0, b=None):
    """Reference GD on ½θᵀAθ − bᵀθ + ½λ‖θ‖², in NumPy: θ ← θ − η(Aθ − b + λθ)."""
    b = np.zeros(len(theta0)) if b is None else b
    path = [np.asarray(theta0, dtype=float)]
    for _ in range(n):
        th = path[-1]
        path.append(th - eta * (A @ th - b + lam * th))
    return np.array(path)


def _gd2(eta):
    return _gd_quadratic(A2, TH2, eta, 20)


def _toy(th):
    """A non-quadratic, holomorphic 2-D loss."""
    x, y = th[0], th[1]
    return 0.5 * (x**2 + 3 * y**2) + 0.5 * x**2 * y + 0.1 * x**4 + 0.2 * jnp.sin(x + 2 * y)


# ------------------------------------------------------------------------------- coefficients
def test_alpha_pf_table_values():
    z = np.array([-1.0, 0.5, 0.9, 1.5, 1.8, 2.0, 2.1, 3.0, 10.0])
    expected = np.array([-0.693147, -1.386294, -2.558428, -0.462098 + 2.094395j,
                         -0.123969 + 1.745329j, 1.570796j, 0.045386 + 1.495997j,
                         0.231049 + 1.047198j, 0.219722 + 0.314159j])
    np.testing.assert_allclose(np.asarray(dc.principal.alpha_pf(z)), expected, atol=1e-6)
    # Im α = π/z beyond 1, and Re α changes sign at z = 2
    zz = np.linspace(1.05, 8.0, 50)
    a = np.asarray(dc.principal.alpha_pf(zz))
    np.testing.assert_allclose(a.imag, np.pi / zz, rtol=1e-13)
    assert np.all(np.sign(a.real[np.abs(zz - 2) > 1e-9]) == np.sign(zz - 2)[np.abs(zz - 2) > 1e-9])
    np.testing.assert_allclose(np.asarray(dc.principal.alpha_igr(z)), -(1 + z / 2))


def test_alpha_pf_series_matches_direct_formula():
    # both sides of the switch |z| = 1e-3, against log1p(-z)/z in numpy (accurate there)
    z = np.array([-2e-3, -1.001e-3, -9.99e-4, -1e-5, 1e-7, 9.99e-4, 1.001e-3, 2e-3])
    np.testing.assert_allclose(np.asarray(dc.principal.alpha_pf(z)).real, np.log1p(-z) / z, rtol=1e-14)
    assert np.asarray(dc.principal.alpha_pf(0.0)) == -1.0
    # complex arguments near 0 as well
    zc = np.array([3e-4 + 4e-4j, -5e-4j, 2e-3 - 1e-3j])
    np.testing.assert_allclose(np.asarray(dc.principal.alpha_pf(zc)), np.log(1 - zc) / zc, rtol=1e-13)


def test_alpha_pf_guards_are_finite_with_finite_gradients():
    vals = np.asarray(dc.principal.alpha_pf(np.array([0.0, 1.0, 1.0 + 1e-14, 1.0 - 1e-14])))
    assert np.all(np.isfinite(vals))
    np.testing.assert_allclose(vals[1].real, np.log(dc.principal.SINGULAR_GUARD), rtol=1e-6)
    for z0 in (0.0, 1.0, 0.5, 3.0):
        d = jax.grad(lambda z: jnp.real(dc.principal.alpha_pf(z)))(z0)
        assert np.isfinite(d)
    # derivative at 0 of -(1 + z/2 + ...) is -1/2
    np.testing.assert_allclose(jax.grad(lambda z: jnp.real(dc.principal.alpha_pf(z)))(0.0), -0.5, rtol=1e-12)


def test_branch_safe_alpha_is_continuous_where_the_principal_branch_jumps():
    above, below = 2.5 + 1e-13j, 2.5 - 1e-13j
    safe = np.asarray(dc.principal.alpha_pf(np.array([above, below])))
    naive = np.asarray(dc.principal.alpha_pf(np.array([above, below]), principal_branch=True))
    assert abs(safe[0] - safe[1]) < 1e-10
    np.testing.assert_allclose(abs(naive[0] - naive[1]), 2 * np.pi / 2.5, rtol=1e-9)


def test_pf_rate_is_the_log_of_gd_factor():
    eta = 0.7
    mu = np.array([-3.0, -0.1, 0.0, 0.5, 1.2, 2.0, 3.5, 10.0])
    kappa = np.asarray(dc.principal.pf_rate(mu, eta=eta))
    np.testing.assert_allclose(np.exp(eta * kappa), 1 - eta * mu, atol=1e-13)
    with pytest.raises(ValueError, match="eta"):
        dc.principal.pf_rate(mu, eta=-0.1)


# ----------------------------------------------------------------- exactness on quadratics
@pytest.mark.parametrize("eta", [0.4, 0.9, 1.05])  # η μ₀ = 0.8, 1.8, 2.1: the three regimes
def test_closed_form_pf_passes_through_every_gd_iterate(eta):
    gd = _gd2(eta)
    pf = dc.principal.principal_flow_quadratic(A2, TH2, eta * np.arange(21), eta=eta)
    np.testing.assert_allclose(np.asarray(pf), np.asarray(gd), atol=1e-12 * np.abs(gd).max())


def test_closed_form_with_weight_decay_affine_term_and_singular_step():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    A = q @ np.diag([3.6, 1.68, 0.24]) @ q.T
    b, th0, eta, lam = np.array([0.3, -1.0, 0.5]), np.array([1.0, -2.0, 0.5]), 0.5, 0.0
    gd = _gd_quadratic(A, th0, eta, 20, b=b)
    pf = dc.principal.principal_flow_quadratic(A, th0, eta * np.arange(21), eta=eta, lam=lam, b=b)
    np.testing.assert_allclose(np.asarray(pf), gd, atol=1e-11)
    # weight decay, a zero curvature (drift t·b along it) and η(μ + λ) = 1 exactly
    A0, th0 = np.diag([0.0, 1.5]), np.ones(2)
    gd = _gd_quadratic(A0, th0, 0.5, 5, lam=0.5, b=b[:2])
    pf = dc.principal.principal_flow_quadratic(A0, th0, 0.5 * np.arange(6), eta=0.5, lam=0.5, b=b[:2])
    np.testing.assert_allclose(np.asarray(pf), gd, atol=1e-12)
    gd = _gd_quadratic(A0, th0, 0.5, 5, b=b[:2])
    pf = dc.principal.principal_flow_quadratic(A0, th0, 0.5 * np.arange(6), eta=0.5, b=b[:2])
    np.testing.assert_allclose(np.asarray(pf), gd, atol=1e-12)


def test_pf_field_on_a_quadratic_is_the_matrix_logarithm(rng, make_spd):
    A = make_spd(rng, [2.0, 0.7, 0.02])
    th = rng.standard_normal(3)
    field = jax.jit(lambda th, eta, lam: dc.principal.principal_field(dc.quadratic(A).loss, eta=eta, lam=lam)(th))
    for eta in (0.4, 0.9, 1.05):  # η μ₀ = 0.8, 1.8, 2.1
        for lam in (0.0, 0.3):  # weight decay shifts every eigenvalue
            # the principal matrix log takes +iπ on the negative eigenvalues of I − η(A + λI)
            expected = sla.logm(np.eye(3) - eta * (A + lam * np.eye(3))) @ th / eta
            got = np.asarray(field(jnp.asarray(th), eta, lam))
            np.testing.assert_allclose(got, expected, atol=1e-12)


def test_integrated_complex_pf_reproduces_gd_beyond_the_threshold():
    eta = 1.05  # η μ₀ = 2.1: GD diverges along θ₁ while oscillating
    field = dc.principal.principal_field(dc.quadratic(A2).loss, eta=eta)
    sol = jax.jit(lambda y0: dc.integrate_complex(field, y0, eta * jnp.arange(6.0), dt=eta / 100))(
        jnp.asarray(TH2))
    gd = _gd2(eta)[:6]
    np.testing.assert_allclose(np.asarray(sol.ys), gd, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gd[-1]), [0.5636785, -0.1798637], atol=1e-7)


# --------------------------------------------------------------------------- general losses
def test_complex_eig_path_uses_v_inverse():
    eta, (x, y) = 0.15, (0.8 + 0.05j, -0.5 - 0.02j)  # η μ < 1: principal log is safe
    th = jnp.array([x, y])
    c, s_ = 0.2 * np.cos(x + 2 * y), 0.2 * np.sin(x + 2 * y)  # derivatives of _toy by hand
    g = np.array([x + x * y + 0.4 * x**3 + c, 3 * y + 0.5 * x**2 + 2 * c])
    H = np.array([[1 + y + 1.2 * x**2 - s_, x - 2 * s_], [x - 2 * s_, 3 - 4 * s_]])
    M = eta * H  # complex symmetric, not Hermitian
    expected = sla.logm(np.eye(2) - M) @ np.linalg.solve(M, g)
    field = jax.jit(lambda th, eta: dc.principal.principal_field(_toy, eta=eta)(th))
    got = np.asarray(field(th, eta))
    np.testing.assert_allclose(got, expected, rtol=1e-11)
    # at a real point the complex (eig) and real (eigh) paths agree
    thr = jnp.array([0.8, -0.5])
    for eta in (0.15, 0.45, 0.7):  # η μ₀ = 0.53, 1.6, 2.5
        np.testing.assert_allclose(np.asarray(field(thr.astype(complex), eta)),
                                   np.asarray(field(thr, eta)), atol=1e-12)


def test_alpha_field_family_and_third_order_term():
    th = jnp.array([0.8, -0.5])
    g, H, T = map(np.asarray, jax.jit(lambda t: (jax.grad(_toy)(t), jax.hessian(_toy)(t),
                                                 jax.jacfwd(jax.hessian(_toy))(t)))(th))
    t3 = np.einsum("ijk,j,k->i", T, g, g)
    np.testing.assert_allclose(np.asarray(jax.jit(dc.principal.third_order_term(_toy))(th)), t3, rtol=1e-12)
    eta = 0.1
    igr = jax.jit(dc.principal.alpha_field(_toy, dc.principal.alpha_igr, eta=eta))(th)
    np.testing.assert_allclose(np.asarray(igr), -(g + eta / 2 * H @ g), rtol=1e-12)
    eq8 = dc.principal.alpha_field(_toy, lambda z: -(1 + z / 2 + z**2 / 3), eta=eta, third_order=True)
    third = jax.jit(eq8)(th)
    closed = -(g + eta / 2 * H @ g + eta**2 * (H @ H @ g / 3 + t3 / 12))  # Eq. (8)
    np.testing.assert_allclose(np.asarray(third), closed, rtol=1e-12)


def test_topk_field_matches_dense_within_the_remainder_bound(rng, make_spd):
    A = make_spd(rng, [5.0, 3.0, 0.01, 0.005, -0.002])
    loss, th, eta = dc.quadratic(A).loss, jnp.asarray(rng.standard_normal(5)), 0.3
    dense = sla.logm(np.eye(5) - eta * A) @ np.asarray(th) / eta  # the PF on a quadratic
    U = np.linalg.eigh(A)[1][:, -2:]
    r = np.linalg.norm(A @ th - U @ (U.T @ (A @ th)))
    zeta = eta * 0.01
    for remainder, bound in (("igr", zeta**2 / (3 * (1 - zeta))), ("gf", zeta / (2 * (1 - zeta)))):
        field = dc.principal.principal_field_topk(loss, eta=eta, k=2, num_iters=5, remainder=remainder)
        topk = jax.jit(field)(th)
        err = np.linalg.norm(np.asarray(topk) - dense)
        assert err <= bound * r * (1 + 1e-6) + 1e-12, (remainder, err, bound * r)
    with pytest.raises(ValueError, match="real parameters"):
        dc.principal.principal_field_topk(loss, eta=eta, k=2, num_iters=5)(th.astype(complex))
    with pytest.raises(ValueError, match="remainder"):
        dc.principal.principal_field_topk(loss, eta=eta, remainder="none")


# ------------------------------------------------------------------------ momentum extension
@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 0.9])
def test_heavy_ball_log_flow_passes_through_every_iterate(beta):
    A = np.diag([2.0, 1.0, 0.3])
    # η μ = 0.25 with β = 0.25 is the Jordan (double-root) case; 2.9 and 3.9 probe the threshold
    for eta in (0.125, 0.9, 1.45, 1.95):
        hb = [np.ones(3), np.ones(3)]  # θ₋₁ = θ₀: started at rest, as dc.heavy_ball
        for _ in range(30):
            hb.append(hb[-1] - eta * A @ hb[-1] + beta * (hb[-1] - hb[-2]))
        hb = np.array(hb[1:])
        flow = dc.principal.heavy_ball_log_flow(A, np.ones(3), eta * np.arange(31), eta=eta, beta=beta)
        scale = np.maximum(1.0, np.abs(hb))
        assert np.max(np.abs(np.asarray(flow) - hb) / scale) < 1e-10, (eta, beta)


def test_heavy_ball_threshold_is_two_times_one_plus_beta():
    for beta in (0.0, 0.3, 0.5, 0.9):
        z = np.linspace(0.01, 4.5, 400)
        radius = np.asarray(dc.principal.heavy_ball_spectral_radius(z, beta=beta))
        far = np.abs(z - 2 * (1 + beta)) > 1e-2
        assert np.all((radius[far] > 1) == (z[far] > 2 * (1 + beta)))
    radius = dc.principal.heavy_ball_spectral_radius(np.array([2.97, 3.03]), beta=0.5)
    np.testing.assert_allclose(np.asarray(radius), [0.9356, 1.0569], atol=1e-4)


def test_hyperparameter_validation():
    loss = dc.quadratic(np.eye(2)).loss
    with pytest.raises(ValueError, match="eta"):
        dc.principal.principal_field(loss, eta=0.0)
    with pytest.raises(ValueError, match="lam"):
        dc.principal.principal_field(loss, eta=0.1, lam=-1.0)
    with pytest.raises(ValueError, match="beta"):
        dc.principal.heavy_ball_log_flow(np.eye(2), np.ones(2), [0.0, 1.0], eta=0.1, beta=1.0)


def test_eos_observer_tracks_the_dense_spectrum_and_the_pf_rate_along_a_run():
    # a small digits MLP in float64: dense eigh at every saved iterate is the reference
    prob = dc.digits(jax.random.PRNGKey(0), hidden=12, n=200, dtype=jnp.float64)
    eta, lam, k = 0.5, 1e-3, 3
    obs = dc.principal.eos_observer(prob.loss, eta=eta, k=k, lam=lam, tol=1e-6)
    traj = jax.jit(lambda th: dc.run(dc.gd(eta, lam=lam), prob.loss, th, 12, observe=obs))(prob.theta0)
    diag = traj.observed
    loss_lam = dc.curvature.with_decay(prob.loss, lam)
    for j in range(traj.loss.shape[0]):
        theta = jax.tree_util.tree_map(lambda x: x[j], traj.params)
        mu, V = dc.hessian_eigh(loss_lam, theta)
        np.testing.assert_allclose(np.asarray(diag.values[j]), np.asarray(mu[::-1][:k]), rtol=1e-5)
        U = np.asarray(diag.vectors[j])
        np.testing.assert_allclose(np.abs(np.sum(U * np.asarray(V[:, ::-1][:, :k]), axis=0)), 1.0, atol=1e-4)
        g = np.asarray(jax.flatten_util.ravel_pytree(jax.grad(loss_lam)(theta))[0])
        c = U.T @ g
        want = np.real(np.asarray(dc.principal.alpha_pf(eta * mu[::-1][:k]))) @ c**2 - (g @ g - c @ c)
        assert float(diag.pf_rate[j]) == pytest.approx(want, rel=1e-6)
        if j:  # signs continue along the run, and a warm start is cheaper than the cold one
            assert np.all(np.sum(U * np.asarray(diag.vectors[j - 1]), axis=0) >= 0)
            assert int(diag.num_matvecs[j]) < int(diag.num_matvecs[0])
    assert np.all(np.asarray(diag.residuals) <= 1e-6 * np.abs(np.asarray(diag.values)) * 1.01)


def test_eos_observer_validates_its_arguments():
    loss = lambda th: jnp.sum(th**2)  # noqa: E731
    with pytest.raises(ValueError, match="eta must be > 0"):
        dc.principal.eos_observer(loss, eta=0.0)
    with pytest.raises(ValueError, match=re.escape("tol must be in (0, 1)")):
        dc.principal.eos_observer(loss, eta=0.1, tol=1.0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        dc.principal.eos_observer(loss, eta=0.1, k=0)
