"""Hessians, Hessian-vector products and Hessian spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import dyncore as dc


def fd_hessian(f, x, h=1e-4):
    """Central second differences of function *values* (no autodiff): O(h^2) accurate."""
    x = np.asarray(x, dtype=float)
    d = x.size
    H = np.empty((d, d))
    E = np.eye(d) * h
    for i in range(d):
        for j in range(d):
            H[i, j] = (
                f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j]) + f(x - E[i] - E[j])
            ) / (4 * h * h)
    return H


def bilinear_np(theta, x=2.0, y=1.5):
    return 0.5 * (y - x * theta[0] * theta[1]) ** 2


def dict_loss(p):
    """A nonlinear loss of a dict pytree (a vector and a scalar)."""
    w, b = p["w"], p["b"]
    return jnp.sum(jnp.sin(w) * b) + jnp.exp(0.3 * b) * jnp.sum(w**2) ** 2 / 4 + jnp.prod(w)


def dict_loss_np(flat):
    # ravel_pytree flattens dict leaves in sorted-key order: "b" (scalar) first, then "w".
    b, w = flat[0], flat[1:]
    return np.sum(np.sin(w) * b) + np.exp(0.3 * b) * np.sum(w**2) ** 2 / 4 + np.prod(w)


DICT_PARAMS = {"w": jnp.array([0.3, -0.7, 1.1]), "b": jnp.asarray(0.4)}

# Eager JAX compiles every primitive separately; jitting each library call once is much faster.
BILINEAR_HESSIAN = jax.jit(lambda theta: dc.hessian(dc.bilinear().loss, theta))
DICT_HESSIAN = jax.jit(lambda p: dc.hessian(dict_loss, p))


@pytest.mark.parametrize("theta", [(1.0, 0.25), (0.7, -0.3), (-1.2, 0.9)])
def test_hessian_matches_finite_differences_bilinear(theta):
    H = np.asarray(BILINEAR_HESSIAN(jnp.asarray(theta)))
    np.testing.assert_allclose(H, fd_hessian(bilinear_np, theta), atol=1e-6)
    np.testing.assert_array_equal(H, H.T)


def test_hessian_matches_finite_differences_dict_pytree():
    flat, _ = ravel_pytree(DICT_PARAMS)
    assert flat.shape == (4,)
    H = np.asarray(DICT_HESSIAN(DICT_PARAMS))
    assert H.shape == (4, 4)
    np.testing.assert_allclose(H, fd_hessian(dict_loss_np, np.asarray(flat)), atol=1e-6)


def test_hvp_equals_hessian_times_vector_on_pytree():
    key = jax.random.PRNGKey(3)
    kw, kb = jax.random.split(key)
    v = {"w": jax.random.normal(kw, (3,)), "b": jax.random.normal(kb, ())}
    hvp = jax.jit(lambda p, v: dc.hvp(dict_loss, p, v))
    hv = hvp(DICT_PARAMS, v)
    assert set(hv) == {"w", "b"}
    assert hv["w"].shape == (3,) and hv["b"].shape == ()
    H = np.asarray(DICT_HESSIAN(DICT_PARAMS))
    expected = H @ np.asarray(ravel_pytree(v)[0])
    np.testing.assert_allclose(np.asarray(ravel_pytree(hv)[0]), expected, rtol=1e-12, atol=1e-12)
    # and it is linear in v (a factor of 2 in v doubles the product)
    hv2 = hvp(DICT_PARAMS, jax.tree_util.tree_map(lambda a: -2.0 * a, v))
    np.testing.assert_allclose(np.asarray(ravel_pytree(hv2)[0]), -2.0 * expected, rtol=1e-12, atol=1e-12)


def test_hessian_eigh_on_random_symmetric_quadratic(rng):
    d = 7
    M = rng.standard_normal((d, d))
    A = M + M.T  # symmetric, indefinite
    prob = dc.quadratic(A, theta0=rng.standard_normal(d))
    w, V = jax.jit(lambda p: dc.hessian_eigh(prob.loss, p))(prob.theta0)
    w, V = np.asarray(w), np.asarray(V)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(A), atol=1e-12)
    assert np.all(np.diff(w) >= 0)
    np.testing.assert_allclose(A @ V, V * w[None, :], atol=1e-11)
    np.testing.assert_allclose(V.T @ V, np.eye(d), atol=1e-12)


def test_hessian_of_quadratic_with_nonsymmetric_matrix_is_symmetric_part(rng):
    A = rng.standard_normal((4, 4))
    prob = dc.quadratic(A)
    H = np.asarray(jax.jit(lambda p: dc.hessian(prob.loss, p))(prob.theta0))
    np.testing.assert_allclose(H, 0.5 * (A + A.T), atol=1e-13)


def test_top_eigenpairs_on_60_dim_quadratic_with_known_spectrum(rng, make_spd):
    d = 60
    top = np.array([10.0, 7.0, 5.0])
    spectrum = np.concatenate([top, np.linspace(-1.0, 1.0, d - 3)])
    A = make_spd(rng, spectrum)
    prob = dc.quadratic(A, theta0=rng.standard_normal(d))
    pairs = jax.jit(lambda p: dc.top_eigenpairs(prob.loss, p, k=3, key=jax.random.PRNGKey(7)))(prob.theta0)
    values, vectors, residuals, num_matvecs = (np.asarray(a) for a in pairs)
    assert values.shape == (3,) and vectors.shape == (d, 3) and residuals.shape == (3,)
    assert num_matvecs == 40 + 3  # all num_iters iterations, then one product per residual
    np.testing.assert_allclose(values, top, atol=1e-8)
    # eigenvectors: H v = mu v, checked independently with the matrix
    own_residuals = np.linalg.norm(A @ vectors - vectors * values[None, :], axis=0)
    assert np.all(own_residuals < 1e-6)
    np.testing.assert_allclose(residuals, own_residuals, atol=1e-10)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-8)
    # and they are the eigenvectors of the top three eigenvalues (up to sign)
    w, V = np.linalg.eigh(A)
    overlaps = np.abs(np.sum(V[:, ::-1][:, :3] * vectors, axis=0))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-8)


def _gapped_quadratic(d=400, top=(10.0, 8.0, 6.5, 5.5, 5.0), seed=3):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.concatenate([top, np.linspace(-1.0, 2.0, d - len(top))])
    A = (Q * spectrum) @ Q.T
    return A, Q, spectrum


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_eigenpairs_with_tol_stops_early_at_the_asked_accuracy(k):
    A, Q, spectrum = _gapped_quadratic()
    loss = lambda t: 0.5 * t @ jnp.asarray(A) @ t  # noqa: E731
    theta = jnp.zeros(A.shape[0])
    for tol in (1e-3, 1e-6):
        ep = jax.jit(lambda p: dc.top_eigenpairs(loss, p, k, num_iters=200, tol=tol, exact_residuals=False))(theta)
        values, vectors, n = np.asarray(ep.values), np.asarray(ep.vectors), int(ep.num_matvecs)
        own = np.linalg.norm(A @ vectors - vectors * values[None, :], axis=0) / np.abs(values)
        assert np.all(own <= 1.2 * tol), (tol, own)  # the estimate is the residual, up to round-off
        np.testing.assert_allclose(np.asarray(ep.residuals) / np.abs(values), own, rtol=1e-3, atol=1e-12)
        assert k <= n < 200  # stopped early, on the estimate alone
        # and no earlier than the accuracy allows: without tol, n - 4 iterations are not enough
        # (the test may overshoot by at most n / 16 iterations, so compare a few steps back)
        short = dc.top_eigenpairs(loss, theta, k, num_iters=max(k, n - 2 - n // 16), exact_residuals=False)
        assert np.max(np.asarray(short.residuals) / np.abs(np.asarray(short.values))) > tol
    # along a path the Hessian moves a little: a warm start from the previous point's top vectors
    # needs a few products beyond k, a cold start many more
    E = np.random.default_rng(1).standard_normal(A.shape)
    E = (E + E.T) / np.linalg.norm(E + E.T, 2)
    moved = lambda t: 0.5 * t @ jnp.asarray(A + 1e-2 * E) @ t  # noqa: E731
    prev = dc.top_eigenpairs(loss, theta, k, num_iters=200, tol=1e-3, exact_residuals=False)
    cold = dc.top_eigenpairs(moved, theta, k, num_iters=200, tol=1e-3, exact_residuals=False)
    warm = dc.top_eigenpairs(moved, theta, k, num_iters=200, tol=1e-3, exact_residuals=False,
                             v0=jnp.sum(prev.vectors, axis=1))
    assert int(warm.num_matvecs) <= k + 5 < int(cold.num_matvecs)
    np.testing.assert_allclose(np.asarray(warm.values), np.asarray(cold.values), rtol=1e-5)


def test_top_eigenpairs_exact_residuals_cost_k_products():
    A, _, _ = _gapped_quadratic()
    loss = lambda t: 0.5 * t @ jnp.asarray(A) @ t  # noqa: E731
    a = dc.top_eigenpairs(loss, jnp.zeros(A.shape[0]), 3, num_iters=60)
    b = dc.top_eigenpairs(loss, jnp.zeros(A.shape[0]), 3, num_iters=60, exact_residuals=False)
    assert int(a.num_matvecs) == 63 and int(b.num_matvecs) == 60
    np.testing.assert_allclose(np.asarray(a.values), np.asarray(b.values), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(a.residuals), np.asarray(b.residuals), rtol=1e-3, atol=1e-12)


def test_top_eigenpairs_warm_start_and_pytree_params():
    # Hessian of the dict loss through the matrix-free path equals the dense top eigenvalue.
    H = np.asarray(DICT_HESSIAN(DICT_PARAMS))
    w = np.linalg.eigvalsh(H)
    pairs = jax.jit(lambda p: dc.top_eigenpairs(dict_loss, p, k=2, v0=jnp.ones(4)))(DICT_PARAMS)
    np.testing.assert_allclose(np.asarray(pairs.values), w[::-1][:2], atol=1e-9)


def test_top_eigenpairs_survives_early_krylov_breakdown():
    # A concave quadratic with a repeated eigenvalue: every eigenvalue is <= -1, and the Krylov
    # space from any start is only 3-dimensional (three distinct eigenvalues), so the Lanczos
    # recursion breaks down after 3 of its 6 steps. The largest eigenvalue is still -1.
    spectrum = np.array([-1.0, -1.0, -1.0, -1.0, -2.0, -3.0])
    A = jnp.diag(jnp.asarray(spectrum))
    loss = lambda t: 0.5 * t @ A @ t  # noqa: E731
    pairs = jax.jit(lambda p: dc.top_eigenpairs(loss, p, k=1))(jnp.linspace(0.5, 1.5, 6))
    value, vector = float(pairs.values[0]), np.asarray(pairs.vectors[:, 0])
    assert np.all(np.isfinite(vector))
    assert value == pytest.approx(-1.0, abs=1e-8)
    np.testing.assert_allclose(np.asarray(A) @ vector, value * vector, atol=1e-8)


def test_sharpness_dense_and_lanczos_agree_on_small_mlp():
    prob = dc.mlp(jax.random.PRNGKey(0), sizes=(2, 4, 1), n=8)
    d = ravel_pytree(prob.theta0)[0].shape[0]
    assert d == 2 * 4 + 4 + 4 + 1

    @jax.jit
    def all_four(p):
        return (
            dc.hessian(prob.loss, p),
            dc.sharpness(prob.loss, p, dense=True),
            dc.sharpness(prob.loss, p, dense=False, num_iters=40),
            dc.sharpness(prob.loss, p),
        )

    H, dense, lanczos, default = all_four(prob.theta0)
    H = np.asarray(H)
    exact = np.linalg.eigvalsh(0.5 * (H + H.T))[-1]
    dense, lanczos, default = float(dense), float(lanczos), float(default)
    assert dense == pytest.approx(exact, rel=1e-12)
    assert lanczos == pytest.approx(dense, rel=1e-8)
    assert default == dense  # d <= 500: the default is the dense routine


def test_sharpness_of_bilinear_at_default_start():
    prob = dc.bilinear()
    sharp = jax.jit(lambda p: dc.sharpness(prob.loss, p))(prob.theta0)
    assert float(sharp) == pytest.approx(4.25, abs=1e-12)


# ------------------------------------------------------------------------ sharpness tracking
def _coupled(th):
    """A small non-convex loss with a moving top eigenvector."""
    coupling = jnp.tanh(th[:-1] * th[1:] - 0.5) ** 2
    return 0.5 * jnp.sum(jnp.arange(1.0, 7.0) * th**2) + 0.3 * jnp.sum(coupling)


def test_track_sharpness_matches_dense_eigh():
    a, b = jnp.linspace(1.0, -1.0, 6), jnp.array([0.3, 0.9, -0.4, 0.2, 0.8, -0.6])
    path = a + jnp.linspace(0.0, 1.0, 13)[:, None] * (b - a)  # nearby consecutive points
    trace = jax.jit(lambda p: dc.track_sharpness(_coupled, p, num_iters=5, lam=0.01))(path)
    dense = jax.jit(jax.vmap(lambda p: dc.hessian_eigh(_coupled, p)[0][-1]))(path) + 0.01
    np.testing.assert_allclose(np.asarray(trace.values), np.asarray(dense), rtol=1e-8)
    assert np.all(np.asarray(trace.residuals) < 1e-3)  # eigenvalues converge quadratically faster
    overlaps = np.sum(np.asarray(trace.vectors[1:]) * np.asarray(trace.vectors[:-1]), axis=1)
    assert np.all(overlaps > 0)  # continuous signs along the path

# ------------------------------------------------------------------------ finite-difference HVP
def _toy(th):
    """A non-quadratic 2-D loss."""
    x, y = th[0], th[1]
    return 0.5 * (x**2 + 3 * y**2) + 0.5 * x**2 * y + 0.1 * x**4 + 0.2 * jnp.sin(x + 2 * y)


def test_finite_difference_hvp_converges_linearly():
    def errors(th):
        g = jax.grad(_toy)(th)
        exact = dc.hvp(_toy, th, g)
        return [jnp.linalg.norm(dc.hvp_fd(_toy, th, g, h=h) - exact) for h in (1e-2, 1e-3)]

    errs = [float(e) for e in jax.jit(errors)(jnp.array([0.8, -0.5]))]
    assert 8 < errs[0] / errs[1] < 12
