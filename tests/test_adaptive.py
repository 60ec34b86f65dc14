"""Backward error analysis of RMSProp and Adam: closed forms, limits, orders and conventions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dyncore as dc

BILINEAR = dc.bilinear(x=2.0, y=1.5, theta0=(2.8, 3.5))  # the paper's toy and start


def _smooth_loss(theta):
    """A non-quadratic loss on R^3 with a non-constant Hessian."""
    return jnp.sum(jnp.sin(theta)) + 0.3 * theta[0] ** 2 * theta[1] + 0.25 * jnp.sum(theta**4) + theta[2] * theta[0]


# ----------------------------------------------------------------------------- coefficients
@pytest.mark.parametrize("b", [0.0, 0.3, 0.9, 0.99])
def test_ema_lag_closed_form_equals_double_sum(b):
    ns = np.arange(201)
    direct = [
        sum(b ** (n - k) * (1 - b) * sum(1.0 for _ in range(k, n)) for k in range(n + 1)) / (1 - b ** (n + 1))
        for n in ns
    ]
    np.testing.assert_allclose(np.asarray(dc.adaptive.ema_lag(b, ns)), direct, rtol=1e-12, atol=1e-12)
    assert float(dc.adaptive.ema_lag(b, 0)) == 0.0
    np.testing.assert_allclose(2 * float(dc.adaptive.ema_lag(b, 20000)) + 1, float(dc.adaptive.drift_factor(b)), rtol=1e-12)


def test_ema_lag_rejects_bad_arguments():
    with pytest.raises(ValueError, match="b must be in"):
        dc.adaptive.ema_lag(1.0, 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        dc.adaptive.ema_lag(0.5, -1)


# ----------------------------------------------------------------------------- the sign condition
@pytest.mark.parametrize("beta,rho,eps", [(0.0, 0.9, 1.0), (0.5, 0.9, 0.01), (0.3, 0.999, 1e-8)])
def test_sign_condition_flips_exactly_at_threshold(beta, rho, eps):
    gstar = float(dc.adaptive.sign_threshold(beta=beta, rho=rho, eps=eps))
    np.testing.assert_allclose(gstar**2, (1 + beta) * (1 - rho) * eps / (2 * (rho - beta)), rtol=1e-14)
    assert abs(float(dc.adaptive.one_norm_weight(gstar, beta=beta, rho=rho, eps=eps))) < 1e-12  # kappa vanishes on the boundary
    below, above = gstar * (1 - 1e-6), gstar * (1 + 1e-6)
    assert bool(dc.adaptive.penalises(below, beta=beta, rho=rho, eps=eps)) and not bool(dc.adaptive.penalises(above, beta=beta, rho=rho, eps=eps))
    assert float(dc.adaptive.one_norm_weight(below, beta=beta, rho=rho, eps=eps)) > 0 > float(dc.adaptive.one_norm_weight(above, beta=beta, rho=rho, eps=eps))
    # limits of kappa: -K/2 for |g| >> sqrt(eps), (1+beta)/(2(1-beta)) for |g| << sqrt(eps)
    K = float(dc.adaptive.drift_constant(beta=beta, rho=rho))
    np.testing.assert_allclose(float(dc.adaptive.one_norm_weight(1e8 * np.sqrt(eps), beta=beta, rho=rho, eps=eps)), -K / 2, rtol=1e-9)
    np.testing.assert_allclose(
        float(dc.adaptive.one_norm_weight(1e-8 * np.sqrt(eps), beta=beta, rho=rho, eps=eps)), 0.5 * (1 + beta) / (1 - beta), rtol=1e-9
    )


def test_sign_threshold_rmsprop_and_beta_above_rho():
    rho, eps = 0.9, 0.3
    np.testing.assert_allclose(float(dc.adaptive.sign_threshold(beta=0.0, rho=rho, eps=eps)) ** 2, eps * (1 - rho) / (2 * rho), rtol=1e-14)
    assert np.isinf(float(dc.adaptive.sign_threshold(beta=0.9, rho=0.5, eps=eps)))
    assert bool(jnp.all(dc.adaptive.penalises(jnp.array([1e-3, 1.0, 1e6]), beta=0.9, rho=0.5, eps=eps)))  # beta > rho: always
    assert float(dc.adaptive.drift_constant(beta=0.5, rho=0.9)) > 0 > float(dc.adaptive.drift_constant(beta=0.9, rho=0.5))


# ----------------------------------------------------------------------------- the one-norm
def test_one_norm_grad_is_hvp_and_matches_finite_differences():
    eps, step, basis = 0.05, 1e-5, jnp.eye(3)
    N = dc.adaptive.perturbed_one_norm(_smooth_loss, eps=eps)

    @jax.jit
    def compute(theta):
        g, H = jax.grad(_smooth_loss)(theta), dc.hessian(_smooth_loss, theta)
        fd = (jax.vmap(N)(theta + step * basis) - jax.vmap(N)(theta - step * basis)) / (2 * step)
        return dc.adaptive.one_norm_grad(_smooth_loss, theta, eps=eps), jax.grad(N)(theta), g, H, fd, N(theta)

    dN, autodiff, g, H, fd, value = compute(jnp.array([0.3, -0.7, 1.1]))
    assert dc.rel_error(dN, autodiff) < 1e-12
    assert dc.rel_error(dN, H @ (g / jnp.sqrt(g**2 + eps))) < 1e-12
    assert dc.rel_error(dN, H @ g) > 1e-2  # it is not the gradient of the squared 2-norm
    assert dc.rel_error(dN, fd) < 1e-8
    np.testing.assert_allclose(float(value), float(jnp.sum(jnp.sqrt(g**2 + eps))), rtol=1e-14)


def test_one_norm_grad_on_pytrees():
    loss = lambda p: _smooth_loss(jnp.concatenate([p["a"], p["b"]]))  # noqa: E731
    flat = jnp.array([0.3, -0.7, 1.1])
    tree = {"a": flat[:2], "b": flat[2:]}
    dN, ref = jax.jit(lambda t, x: (dc.adaptive.one_norm_grad(loss, t, eps=0.1), dc.adaptive.one_norm_grad(_smooth_loss, x, eps=0.1)))(tree, flat)
    np.testing.assert_allclose(jnp.concatenate([dN["a"], dN["b"]]), ref, rtol=1e-13)


# ----------------------------------------------------------------------------- the fields
def test_large_n_field_at_beta_zero_is_remark_3_4():
    eta, rho, eps = 0.01, 0.8, 0.2
    field = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=0.0, rho=rho, eps=eps, large_n=True)

    @jax.jit
    def compute(theta):
        g, dN = jax.grad(_smooth_loss)(theta), dc.adaptive.one_norm_grad(_smooth_loss, theta, eps=eps)
        remark = (-g + eta * (rho / (1 - rho) * g**2 - eps / 2) / (g**2 + eps) * dN) / jnp.sqrt(g**2 + eps)
        return field(theta, 0), remark

    assert dc.rel_error(*compute(jnp.array([0.3, -0.7, 1.1]))) < 1e-13


def test_large_n_field_is_limit_of_exact_field():
    eta, beta, rho, eps = 0.01, 0.7, 0.9, 0.2
    exact = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps)
    large = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps, large_n=True)

    @jax.jit
    def compute(theta):
        g = jax.grad(_smooth_loss)(theta)
        R = jnp.sqrt(g**2 + eps)
        first = -g / R - eta * eps / (2 * R**3) * dc.adaptive.one_norm_grad(_smooth_loss, theta, eps=eps)  # n = 0: only -eps/2
        return exact(theta, 5000), large(theta, 0), exact(theta, 0), first

    late, limit, at0, first = compute(jnp.array([0.3, -0.7, 1.1]))
    assert dc.rel_error(late, limit) < 1e-13
    assert dc.rel_error(at0, first) < 1e-13


def test_large_eps_recovers_barrett_dherin_igr_and_heavy_ball():
    """Example 3.5 / 3.8: sqrt(eps) * field -> -(g + h'/2 (1+b)/(1-b) H g), h' = eta / sqrt(eps)."""
    eta, beta, rho = 0.05, 0.6, 0.8

    @jax.jit
    def compute(theta, eps):
        lr = eta / jnp.sqrt(eps)  # GD's learning rate in this limit
        adam0 = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=0.0, rho=0.0, eps=eps)(theta, 7)  # beta = rho = 0: n-independent
        igr = dc.modified_field(_smooth_loss, eta=lr, order=1)(theta)  # -(g + lr/2 H g), Barrett & Dherin
        hb = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps, large_n=True)(theta, 0)
        g, H = jax.grad(_smooth_loss)(theta), dc.hessian(_smooth_loss, theta)
        heavy_ball = -(g + lr / 2 * (1 + beta) / (1 - beta) * H @ g)  # Ghosh et al., Adam's time units
        return jnp.sqrt(eps) * adam0, igr, jnp.sqrt(eps) * hb, heavy_ball

    theta = jnp.array([0.3, -0.7, 1.1])
    err_igr, err_hb = [], []
    for eps in (1e2, 1e4, 1e6):
        adam0, igr, hb, heavy_ball = compute(theta, eps)
        err_igr.append(dc.rel_error(adam0, igr))
        err_hb.append(dc.rel_error(hb, heavy_ball))
    for err in (err_igr, err_hb):  # both O(g^2 / eps)
        assert err[2] < 1e-4 and 80 < err[0] / err[1] < 120 and 80 < err[1] / err[2] < 120, err


def test_minibatch_field_with_one_batch_is_the_full_batch_closed_form():
    eta, beta, rho, eps = 0.02, 0.6, 0.85, 0.1
    theta, ns = jnp.array([0.3, -0.7, 1.1]), jnp.array([0, 1, 5, 39])
    general = dc.adaptive.minibatch_field([_smooth_loss], np.zeros(40, int), eta=eta, beta=beta, rho=rho, eps=eps)
    closed = dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps)
    both = jax.jit(jax.vmap(lambda n: (general(theta, n), closed(theta, n))))(ns)
    assert dc.rel_error(*both) < 1e-12


def test_rmsprop_field_equals_remark_3_4_sums():
    """Full-batch RMSProp without bias correction: R, P, P-bar of Remark 3.4 by explicit loops."""
    eta, rho, eps, n = 0.02, 0.7, 0.1, 6
    field = dc.adaptive.rmsprop_field(_smooth_loss, eta=eta, rho=rho, eps=eps, n_max=10)
    zeroth = dc.adaptive.rmsprop_field(_smooth_loss, eta=eta, rho=rho, eps=eps, n_max=10, order=0)
    compute = jax.jit(lambda t: (jax.grad(_smooth_loss)(t), dc.hessian(_smooth_loss, t), field(t, n), zeroth(t, n)))
    g, H, first, zero = map(np.asarray, compute(jnp.array([0.3, -0.7, 1.1])))
    R = lambda l: np.sqrt(g**2 * (1 - rho ** (l + 1)) + eps)  # noqa: E731
    P = sum(rho ** (n - k) * (1 - rho) * g * (H @ sum((g / R(l) for l in range(k, n)), np.zeros(3))) for k in range(n + 1))
    Pbar = (1 - rho ** (n + 1)) * g * (H @ (g / R(n)))
    Rn = R(n)
    expected = -g / Rn + eta * (g * (2 * P + Pbar) / (2 * Rn**3) - (H @ (g / Rn)) / (2 * Rn))
    assert dc.rel_error(first, expected) < 1e-12
    assert dc.rel_error(zero, -g / Rn) < 1e-13


def test_minibatch_field_matches_theorem_3_6_by_brute_force():
    """Two batches in an irregular order; L, L-bar, P, P-bar summed exactly as printed in Theorem 3.6."""
    E = [_smooth_loss, lambda t: 0.5 * jnp.sum((t - jnp.array([1.0, -0.5, 0.2])) ** 2) * (1 + t[0] ** 2)]
    order = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    eta, beta, rho, eps, n = 0.03, 0.5, 0.8, 0.05, 5
    theta = jnp.array([0.3, -0.7, 1.1])
    field = dc.adaptive.minibatch_field(E, order, eta=eta, beta=beta, rho=rho, eps=eps)
    G, Hs, value = jax.jit(lambda t: ([jax.grad(f)(t) for f in E], [dc.hessian(f, t) for f in E], field(t, n)))(theta)
    G, Hs = [np.asarray(x) for x in G], [np.asarray(x) for x in Hs]
    g = lambda k: G[order[k]]  # noqa: E731
    H = lambda k: Hs[order[k]]  # noqa: E731
    M = lambda l: sum(beta ** (l - k) * (1 - beta) * g(k) for k in range(l + 1)) / (1 - beta ** (l + 1))  # noqa: E731
    R = lambda l: np.sqrt(sum(rho ** (l - k) * (1 - rho) * g(k) ** 2 for k in range(l + 1)) / (1 - rho ** (l + 1)) + eps)  # noqa: E731
    D = lambda k: sum((M(l) / R(l) for l in range(k, n)), np.zeros(3))  # noqa: E731
    cb, cr = 1 - beta ** (n + 1), 1 - rho ** (n + 1)
    L = sum(beta ** (n - k) * (1 - beta) * H(k) @ D(k) for k in range(n + 1)) / cb
    Lbar = sum(beta ** (n - k) * (1 - beta) * H(k) @ (M(n) / R(n)) for k in range(n + 1)) / cb
    P = sum(rho ** (n - k) * (1 - rho) * g(k) * (H(k) @ D(k)) for k in range(n + 1)) / cr
    Pbar = sum(rho ** (n - k) * (1 - rho) * g(k) * (H(k) @ (M(n) / R(n))) for k in range(n + 1)) / cr
    expected = -M(n) / R(n) + eta * (M(n) * (2 * P + Pbar) / (2 * R(n) ** 3) - (2 * L + Lbar) / (2 * R(n)))
    assert dc.rel_error(value, expected) < 1e-12


def test_adamw_field_limits_and_optimizer():
    eta, beta, rho, eps, lam = 0.02, 0.5, 0.9, 0.1, 0.3
    theta = jnp.array([0.3, -0.7, 1.1])
    zero = lambda t: 0.0 * jnp.sum(t)  # noqa: E731
    fields = (
        dc.adaptive.adamw_field(zero, eta=eta, beta=beta, rho=rho, eps=eps, lam=lam),
        dc.adaptive.adamw_field(zero, eta=eta, beta=beta, rho=rho, eps=eps, lam=lam, decay_correction=False),
        dc.adaptive.adamw_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps, lam=0.0),
        dc.adaptive.adam_field(_smooth_loss, eta=eta, beta=beta, rho=rho, eps=eps),
    )
    wd, wd_plain, w0, adam = jax.jit(lambda t: [f(t, 4) for f in fields])(theta)  # one compilation
    np.testing.assert_allclose(wd, -lam * theta - eta * lam**2 / 2 * theta, rtol=1e-14)  # GD-IGR of lam/2 |theta|^2
    np.testing.assert_allclose(wd_plain, -lam * theta, rtol=1e-14)
    assert dc.rel_error(w0, adam) < 1e-14
    # the optimizer: decoupled decay, eps inside the root, bias-corrected moments
    quad = dc.quadratic(np.diag([1.0, 3.0, 0.5]), theta0=np.array([1.0, -2.0, 0.5]))
    path = np.asarray(jax.jit(lambda p: dc.run(dc.adamw(eta, beta=beta, rho=rho, eps=eps, lam=lam), quad.loss, p, 8).params)(quad.theta0))
    th, m, v = np.array([1.0, -2.0, 0.5]), np.zeros(3), np.zeros(3)
    for k in range(8):
        gr = np.array([1.0, 3.0, 0.5]) * th
        m, v = beta * m + (1 - beta) * gr, rho * v + (1 - rho) * gr**2
        th = th - eta * lam * th - eta * (m / (1 - beta ** (k + 1))) / np.sqrt(v / (1 - rho ** (k + 1)) + eps)
        np.testing.assert_allclose(path[k + 1], th, atol=1e-13)


def test_fields_reject_bad_hyperparameters():
    with pytest.raises(ValueError, match="eta must be > 0"):
        dc.adaptive.adam_field(_smooth_loss, eta=-0.1, beta=0.5, rho=0.9, eps=0.1)
    with pytest.raises(ValueError, match="rho must be in"):
        dc.adaptive.adam_field(_smooth_loss, eta=0.1, beta=0.5, rho=1.0, eps=0.1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        dc.adaptive.perturbed_one_norm(_smooth_loss, eps=0.0)
    with pytest.raises(ValueError, match="batches must index"):
        dc.adaptive.minibatch_field([_smooth_loss], [0, 1], eta=0.1, beta=0.5, rho=0.9, eps=0.1)
    with pytest.raises(ValueError, match="order must be 0 or 1"):
        dc.adaptive.minibatch_field([_smooth_loss], [0, 0], eta=0.1, beta=0.5, rho=0.9, eps=0.1, order=2)
    for large_n in (False, True):
        with pytest.raises(ValueError, match="order must be 0 or 1"):
            dc.adaptive.rmsprop_field(_smooth_loss, eta=0.1, rho=0.9, eps=0.1, n_max=3, order=2, large_n=large_n)
    with pytest.raises(ValueError, match="exactly one of loss"):
        dc.adaptive.tracking_errors(dc.adam(0.1, beta=0.5, rho=0.9), dc.adaptive.plain_field(_smooth_loss, eps=0.1), jnp.ones(3), 3, eta=0.1)


# ----------------------------------------------------------------------------- integration and orders
def test_integrate_pieces_respects_piece_boundaries():
    """theta' = -a_n theta on piece n, a_n alternating 1, 3: theta(N h) = exp(-h sum a_n) theta0."""
    eta, N = 0.01, 21
    field = lambda th, n: -(1.0 + 2.0 * (n % 2)) * th  # noqa: E731
    sol = dc.integrate_pieces(field, jnp.array([1.0, -2.0]), N, eta=eta, substeps=2)
    path = sol.ys
    np.testing.assert_allclose(np.asarray(sol.ts), eta * np.arange(N + 1), rtol=1e-15)  # a FlowSolution now
    assert int(sol.diverged_at) == -1
    a = 1.0 + 2.0 * (np.arange(N) % 2)
    expected = np.exp(-eta * np.concatenate([[0.0], np.cumsum(a)]))[:, None] * np.array([1.0, -2.0])
    np.testing.assert_allclose(np.asarray(path), expected, rtol=1e-9)


def test_tracking_errors_with_traced_steps_matches_run_and_integrate_pieces():
    eta, n, beta, rho, eps = 0.01, 30, 0.5, 0.9, 0.01
    E, th0 = BILINEAR.loss, BILINEAR.theta0
    field = dc.adaptive.adam_field(E, eta=eta, beta=beta, rho=rho, eps=eps)
    tx = dc.adam(eta, beta=beta, rho=rho, eps=eps)

    @jax.jit
    def compute(k):  # k traced in tracking_errors / last_iterate, n static in run / integrate_pieces
        tracked = dc.adaptive.tracking_errors(tx, field, th0, k, eta=eta, loss=E)
        return tracked, dc.adaptive.last_iterate(tx, th0, k, loss=E), dc.run(tx, E, th0, n).params, dc.integrate_pieces(field, th0, n, eta=eta).ys

    tr, last, iterates, flow = compute(n)
    np.testing.assert_allclose(float(tr.global_error), float(jnp.max(jnp.linalg.norm(iterates - flow, axis=1))), rtol=1e-12)
    np.testing.assert_allclose(tr.iterate, iterates[-1], rtol=1e-13)
    np.testing.assert_allclose(tr.flow, flow[-1], rtol=1e-13)
    np.testing.assert_allclose(last, iterates[-1], rtol=1e-13)


def test_corrected_field_is_second_order_and_printed_field_first_order():
    """Global error at T = 0.5 on the paper's toy: slope 2 (corrected), 1 (printed 2R^3, plain)."""
    beta, rho, eps, T = 0.5, 0.9, 1e-2, 0.5
    E, th0 = BILINEAR.loss, BILINEAR.theta0

    @jax.jit
    def errors(eta, n):
        tx = dc.adam(eta, beta=beta, rho=rho, eps=eps)
        fields = (dc.adaptive.adam_field(E, eta=eta, beta=beta, rho=rho, eps=eps),
                  dc.adaptive.adam_field(E, eta=eta, beta=beta, rho=rho, eps=eps, as_printed=True))
        return jnp.stack([dc.adaptive.tracking_errors(tx, f, th0, n, eta=eta, loss=E, local=False).global_error for f in fields])

    e1, e2 = errors(0.005, round(T / 0.005)), errors(0.0025, round(T / 0.0025))
    slopes = np.log2(np.asarray(e1) / np.asarray(e2))
    assert 1.8 < slopes[0] < 2.2, slopes
    assert 0.8 < slopes[1] < 1.25, slopes


def test_step_residual_recovers_the_first_order_term():
    """1-D Adam on E = theta^2/2: the per-step residual equals f1 = (F_n - f0)/eta up to O(eta)."""
    eta, beta, rho, eps, n = 2e-3, 0.5, 0.9, 1.0, 400
    E = lambda t: 0.5 * jnp.sum(t**2)  # noqa: E731
    F, f0 = dc.adaptive.adam_field(E, eta=eta, beta=beta, rho=rho, eps=eps), dc.adaptive.plain_field(E, eps=eps)

    @jax.jit
    def compute(theta0):
        path = dc.run(dc.adam(eta, beta=beta, rho=rho, eps=eps), E, theta0, n).params
        f1 = jax.vmap(lambda th, k: (F(th, k) - f0(th, k)) / eta)(path[:-1], jnp.arange(n))
        return dc.adaptive.step_residual(path, f0, eta=eta), f1

    r, f1 = compute(jnp.array([3.0]))
    assert float(jnp.max(jnp.abs(r - f1))) < 0.02 * float(jnp.max(jnp.abs(f1)))


# ----------------------------------------------------------------------------- conventions
def _hand_adam(grad, theta0, eta, beta, rho, eps, n, inside):
    """Adam by hand: eps inside the root (the paper) or outside (PyTorch's torch.optim.Adam)."""
    th, m, v, out = np.array(theta0, float), 0.0, 0.0, []
    for k in range(n):
        g = grad(th)
        m, v = beta * m + (1 - beta) * g, rho * v + (1 - rho) * g**2
        mhat, vhat = m / (1 - beta ** (k + 1)), v / (1 - rho ** (k + 1))
        th = th - eta * (mhat / np.sqrt(vhat + eps) if inside else mhat / (np.sqrt(vhat) + eps))
        out.append(th)
    return np.array(out)


def _hand_rmsprop(grad, theta0, eta, rho, eps, n, inside):
    """RMSProp by hand, nu_0 = 0, no bias correction: eps inside (the paper) or outside (torch.optim.RMSprop)."""
    th, v, out = np.array(theta0, float), 0.0, []
    for _ in range(n):
        g = grad(th)
        v = rho * v + (1 - rho) * g**2
        th = th - eta * (g / np.sqrt(v + eps) if inside else g / (np.sqrt(v) + eps))
        out.append(th)
    return np.array(out)


def _optax_path(tx, loss, theta0, n):
    """The iterates of an optax transformation, written directly with optax (not dyncore)."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    return jax.lax.scan(step, (theta0, tx.init(theta0)), None, length=n)[1]


def test_conventions_paper_vs_optax_vs_pytorch():
    """The paper's Adam/RMSProp (eps inside the root) against PyTorch's and optax's defaults.

    Where gradients are not much larger than sqrt(eps) the conventions give different paths: the
    book's optimizers implement the paper's, and ``eps_inside=False`` gives PyTorch's.
    """
    eta, beta, rho, eps, n = 0.05, 0.8, 0.95, 0.04, 10
    quad = dc.quadratic(np.diag([0.5, 2.0]), theta0=np.array([0.3, -0.2]))  # |g| ~ sqrt(eps)
    grad = lambda t: np.array([0.5, 2.0]) * t  # noqa: E731

    @jax.jit
    def paths(p):  # one compilation for every optimizer below
        return dict(
            paper=dc.run(dc.adam(eta, beta=beta, rho=rho, eps=eps), quad.loss, p, n).params[1:],
            optax_root=_optax_path(optax.adam(eta, b1=beta, b2=rho, eps=0.0, eps_root=eps), quad.loss, p, n),
            optax_default=_optax_path(optax.adam(eta, b1=beta, b2=rho, eps=eps), quad.loss, p, n),
            rms=dc.run(dc.rmsprop(eta, rho=rho, eps=eps), quad.loss, p, n).params[1:],
            optax_rms=_optax_path(optax.rmsprop(eta, decay=rho, eps=eps), quad.loss, p, n),
        )

    out = {k: np.asarray(v) for k, v in paths(quad.theta0).items()}
    paper, torch_like = out["paper"], _hand_adam(grad, quad.theta0, eta, beta, rho, eps, n, inside=False)
    np.testing.assert_allclose(paper, _hand_adam(grad, quad.theta0, eta, beta, rho, eps, n, inside=True), atol=1e-13)
    np.testing.assert_allclose(paper, out["optax_root"], atol=1e-13)  # optax.adam(eps=0, eps_root=eps)
    np.testing.assert_allclose(out["optax_default"], torch_like, atol=1e-13)  # optax default = PyTorch: eps outside
    assert np.max(np.abs(paper - torch_like)) > 1e-2  # the conventions really differ here
    # first step: perturbed sign step g / sqrt(g^2 + eps) (paper) versus g / (|g| + eps) (PyTorch)
    g0 = grad(quad.theta0)
    np.testing.assert_allclose(paper[0], quad.theta0 - eta * g0 / np.sqrt(g0**2 + eps), atol=1e-14)
    np.testing.assert_allclose(torch_like[0], quad.theta0 - eta * g0 / (np.abs(g0) + eps), atol=1e-14)
    # RMSProp: optax's rmsprop default (eps_in_sqrt=True, nu_0 = 0, no bias correction) is the paper's
    rms, torch_rms = out["rms"], _hand_rmsprop(grad, quad.theta0, eta, rho, eps, n, inside=False)
    np.testing.assert_allclose(rms, _hand_rmsprop(grad, quad.theta0, eta, rho, eps, n, inside=True), atol=1e-13)
    np.testing.assert_allclose(rms, out["optax_rms"], atol=1e-13)
    assert np.max(np.abs(rms - torch_rms)) > 1e-2
    # dc.adam / dc.rmsprop with eps_inside=False match these PyTorch recursions: tests/test_optimizers.py


def test_piece_fields_refuse_a_piece_beyond_their_batches():
    """n ≥ len(batches) used to clamp silently to the last piece while the weights ran on."""
    theta = jnp.array([0.3, -0.7, 1.1])
    for order in (0, 1):
        field = dc.adaptive.rmsprop_field(_smooth_loss, eta=0.01, rho=0.9, eps=0.05, n_max=5, order=order)
        assert np.all(np.isfinite(np.asarray(field(theta, 4))))
        with pytest.raises(ValueError, match=r"n must be in \[0, 4\]"):
            field(theta, 5)
        with pytest.raises(ValueError, match=r"n must be in \[0, 4\]"):
            field(theta, -1)
        traced = jax.jit(lambda n: field(theta, n))
        assert np.all(np.isnan(np.asarray(traced(7)))), "a traced n beyond the pieces must give NaN"
        np.testing.assert_allclose(np.asarray(traced(3)), np.asarray(field(theta, 3)), rtol=1e-13)


def _global_slopes(make_tx, make_field, loss, theta0, T, etas=(0.002, 0.001, 0.0005)):
    """Pairwise log2 slopes of the global tracking error at the fixed horizon T = nη."""
    errors = [float(dc.adaptive.tracking_errors(make_tx(eta), make_field(eta), theta0, round(T / eta), eta=eta, loss=loss,
                                                local=False).global_error) for eta in etas]
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:]))


def _coupled_loss(t):
    return jnp.sum(jnp.sin(t)) + 0.3 * t[0] ** 2 * t[1] + 0.25 * jnp.sum(t**4) + t[2] * t[0]


def test_adamw_and_exact_rmsprop_fields_are_second_order():
    """The documented orders: AdamW's field (2; 1 without the -λQ/2 decay correction), RMSProp's
    n-dependent field (2) and its large-n form (1), on a coupled non-quadratic loss at T = 0.5."""
    th0, T, (beta, rho, eps, lam) = jnp.array([0.8, -0.9, 1.2]), 0.5, (0.5, 0.9, 0.05, 0.4)
    E = _coupled_loss
    adamw = _global_slopes(lambda e: dc.adamw(e, beta=beta, rho=rho, eps=eps, lam=lam),
                           lambda e: dc.adaptive.adamw_field(E, eta=e, beta=beta, rho=rho, eps=eps, lam=lam), E, th0, T)
    uncorrected = _global_slopes(
        lambda e: dc.adamw(e, beta=beta, rho=rho, eps=eps, lam=lam),
        lambda e: dc.adaptive.adamw_field(E, eta=e, beta=beta, rho=rho, eps=eps, lam=lam, decay_correction=False),
        E, th0, T)
    rms = _global_slopes(lambda e: dc.rmsprop(e, rho=rho, eps=eps),
                         lambda e: dc.adaptive.rmsprop_field(E, eta=e, rho=rho, eps=eps, n_max=round(T / e)), E, th0, T)
    rms_large = _global_slopes(lambda e: dc.rmsprop(e, rho=rho, eps=eps),
                               lambda e: dc.adaptive.rmsprop_field(E, eta=e, rho=rho, eps=eps, n_max=1, large_n=True),
                               E, th0, T)
    assert 1.8 < adamw[-1] < 2.2 and 1.8 < rms[-1] < 2.2, (adamw, rms)
    assert uncorrected[-1] < 1.5 and 0.9 < rms_large[-1] < 1.1, (uncorrected, rms_large)


def test_eps_outside_field_is_second_order_while_the_gradient_keeps_its_signs():
    """ε outside the square root: the field tracks Adam to second order where no component of the
    gradient changes sign along the path (its documented range; here all stay positive)."""
    E = lambda t: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 0.5]) * t**2) + 0.1 * jnp.sum(t**3)  # noqa: E731
    th0, (beta, rho, eps) = jnp.array([2.0, 1.5, 3.0]), (0.5, 0.9, 0.05)
    slopes = _global_slopes(lambda e: dc.adam(e, beta=beta, rho=rho, eps=eps, eps_inside=False),
                            lambda e: dc.adaptive.adam_field_eps_outside(E, eta=e, beta=beta, rho=rho, eps=eps), E, th0, 0.3)
    assert 1.8 < slopes[-1] < 2.2, slopes
