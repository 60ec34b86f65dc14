"""Fast mixing of SGD with weight decay: closed forms, exact symmetry, chains, estimators."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

import dyncore as dc

X0 = jnp.array([1.0, 0.0, 0.0])


def _toy_runner(n_chains=200, n_steps=400, every=20, sigma=1.0):
    grad_fn = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, sigma)

    @jax.jit
    def run(eta, lam, key, r0=1.0, beta=0.0):
        return dc.mixing.sgd_chains(
            grad_fn, r0 * X0, n_steps, eta=eta, lam=lam, beta=beta, key=key, n_chains=n_chains, every=every
        )

    return run


RUN = _toy_runner()


# ----------------------------------------------------------------------------- models
def test_great_circle_grad_matches_autodiff_and_is_scale_invariant(rng):
    loss = dc.great_circle(4).loss
    for _ in range(3):
        x = jnp.asarray(rng.standard_normal(4))
        np.testing.assert_allclose(dc.mixing.great_circle_grad(x), jax.grad(loss)(x), atol=1e-14)
        assert abs(float(x @ dc.mixing.great_circle_grad(x))) < 1e-14
        np.testing.assert_array_equal(dc.mixing.great_circle_grad(4 * x), dc.mixing.great_circle_grad(x) / 4)


def test_tangent_noise_is_orthogonal_homogeneous_with_trace_c(rng):
    x = jnp.asarray(rng.standard_normal(5))
    g = dc.mixing.noisy_grad(lambda y: jnp.zeros_like(y), 0.7)
    keys = jax.random.split(jax.random.key(1), 20000)
    xi = jax.vmap(lambda k: g(x, k))(keys)
    np.testing.assert_allclose(xi @ x, 0.0, atol=1e-12)
    np.testing.assert_array_equal(jax.vmap(lambda k: g(2 * x, k))(keys[:5]), xi[:5] / 2)
    trace = float(jnp.mean(jnp.sum(xi**2, axis=1))) * float(x @ x)
    assert trace == pytest.approx(4 * 0.7**2, rel=0.03)  # C = (D − 1) σ̂², MC error 1%


def test_plain_noise_is_isotropic():
    g = dc.mixing.noisy_grad(lambda y: jnp.zeros_like(y), 2.0, tangent=False)
    xi = jax.vmap(lambda k: g(X0, k))(jax.random.split(jax.random.key(2), 20000))
    np.testing.assert_allclose(np.cov(np.asarray(xi).T), 4 * np.eye(3), atol=0.15)


def test_anisotropic_noise_has_constant_trace_and_tangent_variance_a2():
    g = dc.mixing.anisotropic_noise_grad(1.0, 0.6)
    for th in (0.0, 0.7, np.pi / 2):
        x = 2.0 * jnp.array([np.cos(th), np.sin(th), 0.0])
        xi = jax.vmap(lambda k: g(x, k))(jax.random.split(jax.random.key(3), 20000))
        e_theta = jnp.array([-np.sin(th), np.cos(th), 0.0])
        np.testing.assert_allclose(xi @ x, 0.0, atol=1e-12)
        along = float(jnp.mean((xi @ e_theta) ** 2)) * 4
        assert along == pytest.approx(1 + 0.6 * np.cos(2 * th), rel=0.04)
        assert float(jnp.mean(jnp.sum(xi**2, axis=1))) * 4 == pytest.approx(2.0, rel=0.03)


def test_modulated_circle_is_scale_invariant_with_minimizers_in_the_plane():
    prob = dc.mixing.modulated_circle(0.5)
    x = jnp.array([0.3, -1.2, 0.4])
    assert float(prob.loss(7.0 * x)) == pytest.approx(float(prob.loss(x)), rel=1e-13)
    assert abs(float(x @ jax.grad(prob.loss)(x))) < 1e-14
    assert float(prob.loss(jnp.array([0.6, 0.8, 0.0]))) == 0.0
    # normal curvature on the unit sphere is h(θ) = 1 + κ cos 2θ
    th = 0.4
    u = jnp.array([np.cos(th), np.sin(th), 0.0])
    e3 = jnp.array([0.0, 0.0, 1.0])
    curv = jax.jvp(jax.grad(prob.loss), (u,), (e3,))[1][2]
    assert float(curv) == pytest.approx(1 + 0.5 * np.cos(2 * th), rel=1e-12)


# ----------------------------------------------------------------------------- closed forms
# sde_norm4, clock and clock_inverse live in dc.scale_invariance: tests/test_scale_invariance.py
def test_stationary_cos2_closed_form_and_quadrature():
    for kappa in (0.0, 0.3, 0.8):
        want = 0.0 if kappa == 0 else (math.sqrt(1 - kappa**2) - 1) / kappa
        assert float(dc.mixing.stationary_cos2(kappa)) == pytest.approx(want, abs=1e-12)
    num, _ = integrate.quad(
        lambda t: np.cos(2 * t) / np.sqrt(1 + 0.8 * np.cos(2 * t)), 0, 2 * np.pi
    )
    den, _ = integrate.quad(lambda t: 1 / np.sqrt(1 + 0.8 * np.cos(2 * t)), 0, 2 * np.pi)
    assert float(dc.mixing.stationary_cos2(0.8, 0.5)) == pytest.approx(num / den, abs=1e-10)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 0.0), "sigma must be > 0"),
        (lambda: dc.mixing.anisotropic_noise_grad(1.0, 1.0), r"kappa must be in \[0, 1\)"),
        (lambda: dc.mixing.modulated_circle(0.5, dim=2), "dim must be >= 3"),
        (lambda: dc.mixing.stationary_cos2(-0.1), "kappa"),
        (lambda: dc.mixing.stationary_cos2(0.5, n_grid=0), "n_grid must be"),
    ],
)
def test_invalid_inputs_raise_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sgd_chains_validates_its_arguments():
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="multiple of every"):
        dc.mixing.sgd_chains(g, X0, 10, eta=0.1, lam=0.1, key=key, n_chains=2, every=3)
    with pytest.raises(ValueError, match="rho must be in"):
        dc.mixing.sgd_chains(g, X0, 10, eta=0.1, lam=0.1, key=key, n_chains=2, rho=1.5)
    with pytest.raises(ValueError, match="n_chains must be a positive integer"):
        dc.mixing.sgd_chains(g, X0, 10, eta=0.1, lam=0.1, key=key, n_chains=0)
    with pytest.raises(ValueError, match="eta must be > 0"):
        dc.mixing.sgd_chains(g, X0, 10, eta=0.0, lam=0.1, key=key, n_chains=2)


# ----------------------------------------------------------------------------- chains
def test_one_step_is_eq1_and_the_norm_identity_is_exact():
    key = jax.random.key(4)
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    x0 = jnp.array([0.6, 0.3, 0.5])
    rec = dc.mixing.sgd_chains(g, x0, 1, eta=0.05, lam=0.2, key=key, n_chains=3)
    keys = jax.random.split(key, 3)
    for i in range(3):
        gi = g(x0, jax.random.fold_in(keys[i], 0))
        np.testing.assert_allclose(rec.x[i, 1], (1 - 0.05 * 0.2) * x0 - 0.05 * gi, rtol=1e-14)
        # ‖x₁‖² = (1 − ηλ)²‖x₀‖² + η²‖g‖² and cos Δ = (1 − ηλ)‖x₀‖/‖x₁‖
        r1 = float(rec.norm2[i, 1])
        assert r1 == pytest.approx(0.99**2 * float(x0 @ x0) + 0.05**2 * float(gi @ gi), rel=1e-13)
        assert math.cos(float(rec.delta[i, 1])) == pytest.approx(
            0.99 * math.sqrt(float(x0 @ x0) / r1), rel=1e-12
        )


def test_chains_are_independent_reproducible_and_start_where_asked():
    a = RUN(0.02, 0.1, jax.random.key(0))
    b = RUN(0.02, 0.1, jax.random.key(0))
    np.testing.assert_array_equal(a.x, b.x)
    theta = np.asarray(a.theta[:, -1])
    assert len(np.unique(theta)) == theta.size  # no two chains share their noise
    # independent chains: the angle increments of different chains are uncorrelated
    inc = np.diff(np.asarray(a.theta), axis=1)
    corr = np.corrcoef(inc[:, 5:])[np.triu_indices(inc.shape[0], 1)]
    assert abs(corr.mean()) < 0.02
    np.testing.assert_array_equal(a.steps, np.arange(0, 401, 20))
    assert float(a.theta[0, 0]) == 0.0 and float(a.delta[0, 0]) == 0.0
    x0 = jnp.array([0.0, -2.0, 0.0])
    rec = dc.mixing.sgd_chains(
        dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0),
        x0,
        4,
        eta=0.01,
        lam=0.1,
        key=jax.random.key(1),
        n_chains=2,
    )
    assert float(rec.theta[0, 0]) == pytest.approx(-np.pi / 2)


def test_recording_every_does_not_change_the_chains():
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    key = jax.random.key(5)
    fine = dc.mixing.sgd_chains(g, X0, 40, eta=0.05, lam=0.1, key=key, n_chains=4, every=1)
    coarse = dc.mixing.sgd_chains(g, X0, 40, eta=0.05, lam=0.1, key=key, n_chains=4, every=10)
    np.testing.assert_allclose(coarse.x, fine.x[:, ::10], rtol=1e-14)
    np.testing.assert_allclose(coarse.theta, fine.theta[:, ::10], rtol=1e-12, atol=1e-14)



def test_part_observes_one_leaf_of_a_larger_network():
    """part= records only the scale-invariant leaf; its dynamics are those of that leaf alone."""
    g_w = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])

    def g(p, k):  # the noise goes to the first leaf only; the second is a plain quadratic
        return {"w": g_w(p["w"], k), "b": A @ p["b"]}

    params0 = {"w": X0, "b": jnp.array([1.0, -2.0])}
    kw = dict(key=jax.random.key(8), n_chains=3, every=5)
    whole = dc.mixing.sgd_chains(g, params0, 30, eta=0.05, lam=0.1, beta=0.5, **kw)
    part = dc.mixing.sgd_chains(g, params0, 30, eta=0.05, lam=0.1, beta=0.5, part=lambda p: p["w"], **kw)
    alone = dc.mixing.sgd_chains(g_w, X0, 30, eta=0.05, lam=0.1, beta=0.5, **kw)
    assert whole.x.shape == (3, 7, 5) and part.x.shape == (3, 7, 3)
    # the flattened pytree is {"b", "w"} in key order: the observed leaf is the last three entries
    np.testing.assert_array_equal(part.x, whole.x[..., 2:])
    np.testing.assert_allclose(part.x, alone.x, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(part.theta, alone.theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(part.delta, alone.delta, rtol=1e-10, atol=1e-15)
    # without part the angle is the one of the first two entries of everything, here of b
    assert not np.allclose(whole.theta, part.theta)

def test_exact_scale_symmetry_bit_for_bit():
    """(cη, λ/c, √c x₀) gives √c times the (η, λ, x₀) trajectory, with the same keys (c = 4)."""
    key = jax.random.key(6)
    a = RUN(0.02, 0.1, key, 1.0)
    b = RUN(0.08, 0.025, key, 2.0)
    np.testing.assert_array_equal(b.x, 2 * a.x)
    np.testing.assert_array_equal(b.theta, a.theta)
    c = RUN(0.08, 0.025, key, 1.0)  # x₀ not rescaled: a different run
    assert float(jnp.max(jnp.abs(c.direction - a.direction))) > 0.1


def test_equilibrium_norm_and_angular_update():
    """‖x‖⁴ → ηC/(λ(2 − ηλ)) up to O(√(ηλ)), and E Δ² → 2ηλ (within Monte-Carlo error)."""
    eta, lam = 0.05, 0.2  # ηλ = 0.01: equilibrated after 400 steps from ‖x₀‖ = 1
    rec = RUN(eta, lam, jax.random.key(7), 0.8)
    m4 = dc.mixing.chain_mean(rec.norm2**2, 10)
    gd = float(dc.scale_invariance.norm_equilibrium(eta=eta, lam=lam, c=math.sqrt(2.0)).r4)
    assert float(m4.value) == pytest.approx(gd * (1 + math.sqrt(eta * lam) / 4), rel=0.01)
    d2 = dc.mixing.chain_mean(rec.delta**2, 10)
    assert abs(float(d2.value) - 2 * eta * lam) < 4 * float(d2.stderr) + 2 * (eta * lam) ** 2


def test_divergence_is_reported_and_never_nan():
    g = dc.mixing.noisy_grad(lambda x: jnp.zeros_like(x), 1.0, tangent=False)
    rec = dc.mixing.sgd_chains(
        g, X0, 50, eta=1.0, lam=3.0, key=jax.random.key(8), n_chains=3, every=5, max_norm=1e3
    )
    assert np.all(np.asarray(rec.diverged_at) > 0)
    assert np.all(np.isfinite(np.asarray(rec.x))) and np.all(np.isfinite(np.asarray(rec.theta)))



@pytest.mark.parametrize("every", [1, 5])
def test_a_chain_that_hits_zero_is_stopped_there_without_nan(every):
    """ηλ = 1 and a zero gradient: x₁ = (1 - ηλ)x₀ = 0 exactly, a point without a direction."""
    zero_grad = lambda x, k: jnp.zeros_like(x)  # noqa: E731
    rec = dc.mixing.sgd_chains(zero_grad, X0, 10, eta=0.5, lam=2.0, key=jax.random.key(0), n_chains=2, every=every)
    np.testing.assert_array_equal(rec.diverged_at, [1, 1])
    for field in (rec.x, rec.theta, rec.delta):
        assert np.all(np.isfinite(np.asarray(field)))
    np.testing.assert_array_equal(rec.x[:, -1], np.broadcast_to(np.asarray(X0), (2, 3)))  # frozen at x₀
    start = dc.mixing.sgd_chains(zero_grad, jnp.zeros(3), 10, eta=0.5, lam=0.1, key=jax.random.key(0), n_chains=2,
                                 every=every)
    np.testing.assert_array_equal(start.diverged_at, [0, 0])
    assert np.all(np.isfinite(np.asarray(start.delta)))


@pytest.mark.parametrize("every", [1, 4])
def test_a_chain_whose_observed_part_overflows_is_stopped_there(every):
    """The parameters double each step (ascent with η = 1) and stay below ``max_norm``, but the
    observed part ``1e150 x`` has a squared norm of ``1e300 |x|²``, which overflows once
    ``|x| = 2^k`` exceeds about 1.34e4, at ``k = 14``: no direction, so the chain stops there."""
    ascent = lambda x, k: -x  # noqa: E731
    rec = dc.mixing.sgd_chains(ascent, jnp.array([1.0, 0.0]), 20, eta=1.0, lam=0.0, key=jax.random.key(0), n_chains=2,
                               every=every, part=lambda p: 1e150 * p)
    np.testing.assert_array_equal(rec.diverged_at, [14, 14])
    for field in (rec.theta, rec.delta):
        assert np.all(np.isfinite(np.asarray(field)))
    assert float(rec.x[0, -1, 0]) == 1e150 * 2.0**13  # frozen at the last iterate with a direction
    assert np.all(np.asarray(rec.delta) == 0)  # the ray never turns
    fine = dc.mixing.sgd_chains(ascent, jnp.array([1.0, 0.0]), 20, eta=1.0, lam=0.0, key=jax.random.key(0), n_chains=2,
                                every=every, part=lambda p: 1e140 * p)
    np.testing.assert_array_equal(fine.diverged_at, [-1, -1])


@pytest.mark.perf
@pytest.mark.parametrize("rho", [None, 0.99])
def test_the_step_is_traced_once_whatever_every(rho):
    """One step in the traced program, however the steps are grouped for recording: a second copy
    (for the recorded step) doubled the compile time of every chain figure."""
    calls = []
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)

    def counted(x, key):
        calls.append(1)
        return g(x, key)

    for every in (1, 5):
        calls.clear()
        jax.jit(lambda beta: dc.mixing.sgd_chains(counted, X0, 20, eta=0.1, lam=0.1, beta=beta, rho=rho,
                                                  key=jax.random.key(0), n_chains=4, every=every).delta)(0.5)
        assert len(calls) == 1, every


def test_momentum_and_adamw_are_the_optax_updates():
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    key = jax.random.key(9)
    x0 = jnp.array([0.6, 0.3, 0.5])
    for rho, opt in (
        (None, dc.heavy_ball(0.05, beta=0.5, lam=0.1)),
        (0.99, dc.adamw(0.05, beta=0.5, rho=0.99, eps=1e-16, lam=0.1)),
    ):
        rec = dc.mixing.sgd_chains(g, x0, 3, eta=0.05, lam=0.1, beta=0.5, key=key, n_chains=1, rho=rho)
        k0 = jax.random.split(key, 1)[0]
        x, state = x0, opt.init(x0)
        for k in range(3):
            upd, state = opt.update(g(x, jax.random.fold_in(k0, k)), state, x)
            x = x + upd
        np.testing.assert_allclose(rec.x[0, -1], x, rtol=1e-13)


def _reference_chains(grad_fn, x0, n_steps, opt, *, key, n_chains, every, part=lambda p: p, max_norm=1e8):
    """sgd_chains written out by hand (the pre-issue-18 implementation): chain i steps with the keys
    fold_in(split(key, n_chains)[i], k), one ``lax.scan`` over blocks of ``every`` optax steps, the
    angle accumulated from atan2 increments, the chord of the block's last step taken at its end."""

    def obs(p):
        return dc.trees.flat(part(p))

    def has_direction(v):
        sq = jnp.sum(v**2)
        return jnp.isfinite(sq) & (sq > 0)

    def one_chain(chain_key):
        def step(carry, k):
            params, state, theta, div, _ = carry
            g = grad_fn(params, jax.random.fold_in(chain_key, k))
            updates, new_state = opt.update(g, state, params)
            new = optax.apply_updates(params, updates)
            a, b = obs(params), obs(new)
            dtheta = jnp.arctan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1])
            div = jnp.where((div < 0) & (~dc.trees.tree_ok(new, max_norm) | ~has_direction(b)), k + 1, div)
            keep = div >= 0
            pick = lambda n, o: jnp.where(keep, o, n)  # noqa: E731
            params = jax.tree_util.tree_map(pick, new, params)
            state = jax.tree_util.tree_map(pick, new_state, state)
            return (params, state, theta + jnp.where(keep, 0.0, dtheta), div, a), None

        def block(carry, r):
            carry, _ = jax.lax.scan(step, carry, r * every + jnp.arange(every))
            params, _, theta, div, prev = carry
            cur = obs(params)
            chord = jnp.linalg.norm(cur / jnp.linalg.norm(cur) - prev / jnp.linalg.norm(prev))
            return carry, (cur, theta, jnp.where(div >= 0, 0.0, 2 * jnp.arcsin(jnp.minimum(chord / 2, 1.0))))

        first = obs(x0)
        theta0 = jnp.arctan2(first[1], first[0])
        div0 = jnp.where(dc.trees.tree_ok(x0, max_norm) & has_direction(first), -1, 0)
        carry, (xs, thetas, deltas) = jax.lax.scan(
            block, (x0, opt.init(x0), theta0, div0, first), jnp.arange(n_steps // every)
        )
        return (jnp.concatenate([first[None], xs]), jnp.concatenate([theta0[None], thetas]),
                jnp.concatenate([jnp.zeros(1), deltas]), carry[3])

    xs, thetas, deltas, div = jax.vmap(one_chain)(jax.random.split(key, n_chains))
    return dc.mixing.ChainRecord(jnp.arange(0, n_steps + 1, every), xs, thetas, deltas, div)


def _equivalence_cases():
    """(sgd_chains arguments, the optimizer they mean): SGD, heavy ball, AdamW, a pytree with part=,
    divergence and a chain that loses its direction."""
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    tree_g = lambda p, k: {"w": g(p["w"], k), "b": A @ p["b"]}  # noqa: E731
    tree0 = {"w": X0, "b": jnp.array([1.0, -2.0])}
    zero_noise = dc.mixing.noisy_grad(lambda x: jnp.zeros_like(x), 1.0, tangent=False)
    x0, key = jnp.array([0.6, 0.3, 0.5]), jax.random.key(7)
    return [
        (dict(grad_fn=g, x0=X0, n_steps=60, key=key, n_chains=5, every=1), dict(eta=0.05, lam=0.2)),
        (dict(grad_fn=g, x0=x0, n_steps=60, key=key, n_chains=4, every=6), dict(eta=0.05, lam=0.1, beta=0.5)),
        (dict(grad_fn=g, x0=x0, n_steps=40, key=key, n_chains=3, every=4),
         dict(eta=0.05, lam=0.1, beta=0.9, rho=0.999, eps=1e-8)),
        (dict(grad_fn=tree_g, x0=tree0, n_steps=30, key=jax.random.key(8), n_chains=3, every=5,
              part=lambda p: p["w"]), dict(eta=0.05, lam=0.1, beta=0.5)),
        (dict(grad_fn=zero_noise, x0=X0, n_steps=50, key=jax.random.key(8), n_chains=3, every=5, max_norm=1e3),
         dict(eta=1.0, lam=3.0)),
        (dict(grad_fn=lambda x, k: jnp.zeros_like(x), x0=X0, n_steps=10, key=jax.random.key(0), n_chains=2,
              every=5), dict(eta=0.5, lam=2.0)),
    ]


def _optimizer(eta, lam, beta=0.0, rho=None, eps=1e-16):
    if rho is None:
        return dc.heavy_ball(eta, beta=beta, lam=lam)
    return dc.adamw(eta, beta=beta, rho=rho, eps=eps, lam=lam)


@pytest.mark.parametrize("field", ["steps", "x", "theta", "diverged_at"])
def test_sgd_chains_is_the_hand_written_loop_bit_for_bit(field):
    """sgd_chains is dc.run_chains with an Observer since issue 18; its iterates, angles and
    divergence steps are bit for bit those of the hand-written loop it replaced (the chapters'
    figures and numbers depend on it)."""
    for args, hp in _equivalence_cases():
        args = dict(args)
        grad_fn, x0, n_steps = args.pop("grad_fn"), args.pop("x0"), args.pop("n_steps")
        got = dc.mixing.sgd_chains(grad_fn, x0, n_steps, **hp, **args)
        want = _reference_chains(grad_fn, jax.tree_util.tree_map(jnp.asarray, x0), n_steps, _optimizer(**hp), **args)
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=str(hp))


def test_sgd_chains_angular_updates_are_the_hand_written_loop_to_round_off():
    """The same for the angular updates Δ, to round-off: sgd_chains takes the chords after the run,
    vectorised over records, where the loop took them inside its block scan. A chord is a small
    difference of unit vectors, so the two orders of operations differ by up to a few hundred ulps
    of Δ (measured: at most 5e-14 relative, 4e-14 absolute). Frozen records are exactly 0 in both."""
    for args, hp in _equivalence_cases():
        args = dict(args)
        grad_fn, x0, n_steps = args.pop("grad_fn"), args.pop("x0"), args.pop("n_steps")
        got = dc.mixing.sgd_chains(grad_fn, x0, n_steps, **hp, **args)
        want = _reference_chains(grad_fn, jax.tree_util.tree_map(jnp.asarray, x0), n_steps, _optimizer(**hp), **args)
        np.testing.assert_allclose(got.delta, want.delta, rtol=1e-12, atol=1e-13, err_msg=str(hp))
        frozen = np.asarray(want.steps)[None, :] >= np.where(want.diverged_at >= 0, want.diverged_at, 1 << 30)[:, None]
        np.testing.assert_array_equal(np.asarray(got.delta)[frozen], 0.0, err_msg=str(hp))


# ----------------------------------------------------------------------------- estimators
def test_estimators_on_synthetic_brownian_angles(rng):
    n, R, dk, s = 4000, 21, 10, 0.003
    inc = np.sqrt(s * dk) * rng.standard_normal((n, R - 1))
    theta = np.concatenate([np.zeros((n, 1)), np.cumsum(inc, axis=1)], axis=1)
    steps = np.arange(R) * dk
    rate = dc.mixing.diffusion_rate(theta, steps)
    assert abs(float(rate.value) - s) < 4 * float(rate.stderr)
    assert float(rate.stderr) == pytest.approx(s * math.sqrt(2 / (n * (R - 1))), rel=0.1)
    qv = dc.mixing.quadratic_variation(theta)
    np.testing.assert_allclose(qv.value[1:], s * steps[1:], rtol=0.1)
    np.testing.assert_allclose(dc.mixing.angle_variance(theta)[1:], s * steps[1:], rtol=0.15)
    order = dc.mixing.circular_order(theta)
    np.testing.assert_allclose(order, np.exp(-s * steps / 2), atol=0.04)
    assert dc.mixing.first_passage(steps, np.exp(-s * steps / 2), 0.8) == pytest.approx(
        2 * math.log(1.25) / s, rel=0.01
    )
    assert dc.mixing.first_passage(steps, np.ones(R), 0.5) == math.inf
    assert dc.mixing.first_passage(steps, s * steps, 0.3, rising=True) == pytest.approx(100.0)


def test_chain_mean_standard_error():
    vals = np.arange(12.0).reshape(4, 3)
    est = dc.mixing.chain_mean(vals, 1)
    per_chain = vals[:, 1:].mean(axis=1)
    assert float(est.value) == pytest.approx(per_chain.mean())
    assert float(est.stderr) == pytest.approx(per_chain.std(ddof=1) / 2)


@pytest.mark.parametrize("d", [10, 20])  # columns summed (d <= 16) and a matrix product
def test_rotated_grad_is_the_gradient_in_the_rotated_basis(rng, make_orthogonal, d):
    q = jnp.asarray(make_orthogonal(rng, d))
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 0.5)
    x, key = jnp.asarray(rng.standard_normal(d)), jax.random.key(7)
    rotated = dc.mixing.rotated_grad(g, q)(x, key)
    np.testing.assert_allclose(rotated, q.T @ g(q @ x, key), rtol=0, atol=1e-14)
    # without noise it is the gradient of L(Qx)
    loss = lambda y: dc.great_circle(d).loss(y)  # noqa: E731
    exact = dc.mixing.rotated_grad(lambda y, k: jax.grad(loss)(y), q)(x, key)
    np.testing.assert_allclose(exact, jax.grad(lambda y: loss(q @ y))(x), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="q must be a square"):
        dc.mixing.rotated_grad(g, q[:, :3])


def test_rotated_chains_are_the_rotated_trajectory_for_heavy_ball_not_for_adamw(rng, make_orthogonal):
    q = jnp.asarray(make_orthogonal(rng, 6))
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    y0 = jnp.ones(6) / jnp.sqrt(6.0)
    kw = dict(key=jax.random.key(2), n_chains=4, every=10)
    run = lambda grad_fn, x0, **extra: dc.mixing.sgd_chains(grad_fn, x0, 50, eta=0.05, lam=0.1, beta=0.5, **kw, **extra)  # noqa
    # heavy ball is linear in the gradient: with the same keys x_k = Q^T y_k, so norms and angular
    # updates agree to rounding; AdamW's coordinate-wise scaling does not commute with Q
    plain, turned = run(g, y0), run(dc.mixing.rotated_grad(g, q), q.T @ y0)
    np.testing.assert_allclose(turned.norm2, plain.norm2, rtol=1e-12)
    np.testing.assert_allclose(turned.delta, plain.delta, rtol=1e-9, atol=1e-14)
    plain, turned = run(g, y0, rho=0.99), run(dc.mixing.rotated_grad(g, q), q.T @ y0, rho=0.99)
    assert not np.allclose(turned.delta, plain.delta, rtol=1e-3)


@pytest.mark.perf
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="concerns XLA's CPU compiler")
def test_rotated_chains_compile_without_a_library_matrix_product():
    """In a vmapped chain, q @ x is a library kernel (no whole-loop compile); rotated_grad is not."""
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(3), (10, 10)))[0]
    g = dc.mixing.noisy_grad(dc.mixing.great_circle_grad, 1.0)
    x0 = q.T @ jnp.ones(10) / jnp.sqrt(10.0)
    chains = lambda grad_fn: jax.jit(  # noqa: E731
        lambda beta: dc.mixing.sgd_chains(grad_fn, x0, 40, eta=0.01, lam=0.1, beta=beta, key=jax.random.key(4), n_chains=8,
                                          every=20).delta)
    fast, plain = chains(dc.mixing.rotated_grad(g, q)), chains(lambda x, k: q.T @ g(q @ x, k))
    np.testing.assert_allclose(fast(0.5), plain(0.5), rtol=0, atol=1e-12)
    hlo = fast.lower(0.5).compile().as_text()
    assert " dot(" not in hlo and "xla_cpu_small_call" in hlo


def test_modulated_circle_law_in_four_dimensions_is_h_to_the_minus_one():
    """Each of the D − 2 normal directions adds its curvature drift: π ∝ h^{-(D-2)/2}, h^{-1} at D = 4.

    The old docstring claimed h^{-1/2} for every D; at κ = 0.8 that gives E cos 2θ = −0.259, far
    outside this tolerance (4 standard errors + 0.02 for the O(ηλ) bias, as in chapter 6).
    """
    prob = dc.mixing.modulated_circle(0.8, dim=4)
    g = dc.mixing.noisy_grad(jax.grad(prob.loss), 1.0)
    x0 = jnp.zeros(4).at[0].set(0.67)  # near the equilibrium norm
    rec = dc.mixing.sgd_chains(g, x0, 4000, eta=0.02, lam=0.1, key=jax.random.PRNGKey(3), n_chains=400, every=50)
    est = dc.mixing.chain_mean(jnp.cos(2 * rec.theta), 60)  # steps 3000-4000
    dc.check("D = 4: E cos 2θ vs h^-1", est.value, dc.mixing.stationary_cos2(0.8, (4 - 2) / 2),
             atol=4 * float(est.stderr) + 0.02)
    assert abs(float(est.value) - float(dc.mixing.stationary_cos2(0.8, 0.5))) > 0.15
