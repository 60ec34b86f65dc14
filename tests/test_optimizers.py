"""Optimizers against their hand-written recursions (the runner itself: tests/test_runner.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dyncore as dc


@pytest.fixture
def quad(rng, make_spd):
    """A 4-d quadratic L = 1/2 th^T A th - b^T th with a known SPD A, as (A, b, theta0, problem)."""
    A = make_spd(rng, [0.5, 1.0, 2.0, 3.5])
    b = rng.standard_normal(4)
    theta0 = rng.standard_normal(4)
    return A, b, theta0, dc.quadratic(A, theta0=theta0, b=b)


# ----------------------------------------------------------------------------- GD
def test_gd_equals_matrix_power_closed_form(quad):
    A, _, theta0, _ = quad
    eta, lam, n = 0.2, 0.1, 12
    prob = dc.quadratic(A, theta0=theta0)  # b = 0: theta_k = (I - eta (A + lam I))^k theta0
    traj = dc.run(dc.gd(eta, lam=lam), prob.loss, prob.theta0, n)
    P = np.asarray(traj.params)
    assert P.shape == (n + 1, 4)
    M = np.eye(4) - eta * (A + lam * np.eye(4))
    for k in (0, 1, 2, 5, n):
        np.testing.assert_allclose(P[k], np.linalg.matrix_power(M, k) @ theta0, atol=1e-12)
    # the loss is the loss of each saved iterate (L without the weight-decay term)
    np.testing.assert_allclose(np.asarray(traj.loss), 0.5 * np.einsum("ki,ij,kj->k", P, A, P), rtol=1e-12)
    assert int(traj.diverged_at) == -1 and not bool(traj.diverged)


# ----------------------------------------------------------------------------- heavy ball
def test_heavy_ball_equals_hand_written_recursion(quad):
    A, b, theta0, prob = quad
    eta, beta, lam, n = 0.1, 0.8, 0.05, 15
    traj = dc.run(dc.heavy_ball(eta, beta=beta, lam=lam), prob.loss, prob.theta0, n)
    prev, th = theta0.copy(), theta0.copy()  # at rest: theta_{-1} = theta_0
    expected = [th]
    for _ in range(n):
        g = A @ th - b
        th, prev = th - eta * (g + lam * th) + beta * (th - prev), th
        expected.append(th)
    np.testing.assert_allclose(np.asarray(traj.params), np.array(expected), atol=1e-12)


# ----------------------------------------------------------------------------- RMSProp
def _rmsprop_np(A, b, theta0, eta, rho, eps, lam, n, inside):
    th, nu = theta0.copy(), np.zeros_like(theta0)
    out = [th]
    for _ in range(n):
        g = A @ th - b + lam * th
        nu = rho * nu + (1 - rho) * g**2
        step = g / np.sqrt(nu + eps) if inside else g / (np.sqrt(nu) + eps)
        th = th - eta * step
        out.append(th)
    return np.array(out)


def test_rmsprop_equals_hand_written_recursion_both_eps_conventions(quad):
    A, b, theta0, prob = quad
    # eps large enough that inside/outside the root give visibly different paths
    eta, rho, eps, lam, n = 0.05, 0.9, 0.1, 0.02, 12
    inside = dc.run(dc.rmsprop(eta, rho=rho, eps=eps, lam=lam), prob.loss, prob.theta0, n)
    outside = dc.run(dc.rmsprop(eta, rho=rho, eps=eps, lam=lam, eps_inside=False), prob.loss, prob.theta0, n)
    exp_in = _rmsprop_np(A, b, theta0, eta, rho, eps, lam, n, inside=True)
    exp_out = _rmsprop_np(A, b, theta0, eta, rho, eps, lam, n, inside=False)
    assert np.max(np.abs(exp_in - exp_out)) > 1e-3  # the two conventions really differ here
    np.testing.assert_allclose(np.asarray(inside.params), exp_in, atol=1e-12)
    np.testing.assert_allclose(np.asarray(outside.params), exp_out, atol=1e-12)


# ----------------------------------------------------------------------------- Adam
def _adam_np(A, b, theta0, eta, beta, rho, eps, lam, n, inside):
    th, m, nu = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
    out = [th]
    for k in range(n):
        g = A @ th - b + lam * th
        m = beta * m + (1 - beta) * g
        nu = rho * nu + (1 - rho) * g**2
        mhat = m / (1 - beta ** (k + 1))
        nuhat = nu / (1 - rho ** (k + 1))
        step = mhat / np.sqrt(nuhat + eps) if inside else mhat / (np.sqrt(nuhat) + eps)
        th = th - eta * step
        out.append(th)
    return np.array(out)


def test_adam_equals_hand_written_bias_corrected_recursion(quad):
    A, b, theta0, prob = quad
    eta, beta, rho, eps, lam, n = 0.05, 0.8, 0.95, 0.05, 0.02, 12
    inside = dc.run(dc.adam(eta, beta=beta, rho=rho, eps=eps, lam=lam), prob.loss, prob.theta0, n)
    outside = dc.run(dc.adam(eta, beta=beta, rho=rho, eps=eps, lam=lam, eps_inside=False), prob.loss, prob.theta0, n)
    exp_in = _adam_np(A, b, theta0, eta, beta, rho, eps, lam, n, inside=True)
    exp_out = _adam_np(A, b, theta0, eta, beta, rho, eps, lam, n, inside=False)
    assert np.max(np.abs(exp_in - exp_out)) > 1e-3
    np.testing.assert_allclose(np.asarray(inside.params), exp_in, atol=1e-12)
    np.testing.assert_allclose(np.asarray(outside.params), exp_out, atol=1e-12)


def test_adam_eps_outside_is_optax_default(quad):
    _, _, _, prob = quad
    eta, beta, rho, eps, n = 0.05, 0.8, 0.95, 0.05, 8
    ours = dc.run(dc.adam(eta, beta=beta, rho=rho, eps=eps, eps_inside=False), prob.loss, prob.theta0, n)
    tx = optax.adam(eta, b1=beta, b2=rho, eps=eps)  # optax defaults otherwise (eps_root=0)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(prob.loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    params, state = prob.theta0, tx.init(prob.theta0)
    path = [params]
    for _ in range(n):
        params, state = step(params, state)
        path.append(params)
    np.testing.assert_allclose(np.asarray(ours.params), np.asarray(jnp.stack(path)), atol=1e-13)


# ----------------------------------------------------------------------------- DAL
def test_dal_step_equals_hand_computation(rng, make_spd):
    A = make_spd(rng, [4.0, 1.0, 0.3])
    loss, th = dc.quadratic(A).loss, rng.standard_normal(3)
    rate_fn = jax.jit(jax.vmap(lambda th, p, m: dc.optimizers.dal_rate(loss, th, p=p, max_lr=m),
                               (0, None, None)))
    two_steps = jax.jit(lambda th, p, m, beta, lam: dc.run(
        dc.dal(loss, p=p, max_lr=m, beta=beta, lam=lam), loss, th, 2).params)
    for p, max_lr in ((1.0, 5.0), (0.5, 5.0), (2.0, 0.1)):
        g = A @ th
        v = np.linalg.norm(A @ (g / np.linalg.norm(g)))
        rate = min(2 / v**p, max_lr)
        np.testing.assert_allclose(float(rate_fn(jnp.asarray(th)[None], p, max_lr)[0]), rate,
                                   rtol=1e-13)
        first = two_steps(jnp.asarray(th), p, max_lr, 0.0, 0.0)[1]
        np.testing.assert_allclose(np.asarray(first), th - rate * g, rtol=1e-13)
    # heavy ball with DAL and weight decay: m₁ = r₀ g₀, θ₁ = θ₀ - m₁; m₂ = β m₁ + r₁ g₁
    beta, lam = 0.5, 0.1
    J = A + lam * np.eye(3)
    path = two_steps(jnp.asarray(th), 1.0, 5.0, beta, lam)
    g0 = J @ th
    m1 = 2 / np.linalg.norm(J @ g0 / np.linalg.norm(g0)) * g0
    th1 = th - m1
    g1 = J @ th1
    th2 = th1 - (beta * m1 + 2 / np.linalg.norm(J @ g1 / np.linalg.norm(g1)) * g1)
    np.testing.assert_allclose(np.asarray(path[2]), th2, rtol=1e-12)
    # DAL-1 sits at or beyond the edge of stability: η μ_max >= 2 (μ_max = 4) at any point
    rates = rate_fn(jnp.asarray(rng.standard_normal((500, 3))), 1.0, 1e6)
    assert float(jnp.min(rates)) * 4.0 >= 2.0
    assert float(rate_fn(jnp.zeros((1, 3)), 1.0, 3.0)[0]) == 3.0  # g = 0: the cap


def test_dal_rate_is_also_the_principal_namespaces():
    assert dc.principal.dal_rate is dc.optimizers.dal_rate


def test_dal_validation():
    loss = dc.quadratic(np.eye(2)).loss
    with pytest.raises(ValueError, match="p must be"):
        dc.dal(loss, p=-1.0)
    with pytest.raises(ValueError, match="max_lr"):
        dc.optimizers.scale_by_dal(loss, p=1.0, max_lr=0.0)
    with pytest.raises(ValueError, match="beta"):
        dc.dal(loss, p=1.0, beta=1.0)
