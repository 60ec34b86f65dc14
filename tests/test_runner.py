"""The divergence-aware runner: dc.run and dc.run_chains (the optimizers: tests/test_optimizers.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- divergence
def _first_step_beyond(factor, theta0, max_norm):
    k = 0
    while factor**k * abs(theta0) <= max_norm:
        k += 1
    return k


def test_run_reports_divergence_of_gd_on_1d_quadratic():
    a, eta, theta0, max_norm, n = 1.0, 2.5, 0.7, 1e3, 40
    prob = dc.quadratic([[a]], theta0=[theta0])
    traj = dc.run(dc.gd(eta), prob.loss, prob.theta0, n, max_norm=max_norm)
    # theta_k = (1 - eta a)^k theta0 = (-1.5)^k theta0: first k with 1.5^k |theta0| > max_norm
    k_div = _first_step_beyond(abs(1 - eta * a), theta0, max_norm)
    assert 0 < k_div < n
    assert int(traj.diverged_at) == k_div
    assert bool(traj.diverged)
    P = np.asarray(traj.params)[:, 0]
    L = np.asarray(traj.loss)
    assert P.shape == (n + 1,) and L.shape == (n + 1,)
    assert np.all(np.isfinite(P)) and np.all(np.isfinite(L))
    ks = np.arange(k_div)
    np.testing.assert_allclose(P[:k_div], (1 - eta * a) ** ks * theta0, rtol=1e-12)
    # frozen at the last good iterate from then on, which is within max_norm
    np.testing.assert_array_equal(P[k_div:], P[k_div - 1])
    assert abs(P[k_div - 1]) <= max_norm
    np.testing.assert_allclose(L, 0.5 * a * P**2, rtol=1e-12)
    assert traj.status() == f"diverged at step {k_div}"
    with pytest.raises(dc.DivergenceError) as info:
        traj.raise_if_diverged()
    assert info.value.step == k_div
    assert str(k_div) in str(info.value)
    # valid_prefix keeps exactly the iterates before divergence
    np.testing.assert_array_equal(dc.valid_prefix(P, traj.diverged_at), P[:k_div])


def test_run_stays_bounded_below_stability_threshold():
    a, eta, theta0, n = 1.0, 1.9, 0.7, 40
    prob = dc.quadratic([[a]], theta0=[theta0])
    traj = dc.run(dc.gd(eta), prob.loss, prob.theta0, n, max_norm=1e3)
    assert int(traj.diverged_at) == -1 and not bool(traj.diverged)
    assert traj.status() == "stayed bounded"
    assert traj.raise_if_diverged() is traj
    np.testing.assert_allclose(np.asarray(traj.params)[:, 0], (1 - eta * a) ** np.arange(n + 1) * theta0, rtol=1e-12)


def _log_loss(theta):
    # finite for theta > 0 only; GD with eta = 0.6 goes 1 -> 0.4 -> -1.1, where the log is NaN
    return jnp.log(theta[0])


def test_nan_loss_is_reported_as_divergence_not_returned():
    traj = dc.run(dc.gd(0.6), _log_loss, jnp.array([1.0]), 6)
    assert int(traj.diverged_at) >= 0
    assert np.all(np.isfinite(np.asarray(traj.params)))
    assert np.all(np.isfinite(np.asarray(traj.loss))), np.asarray(traj.loss)


def test_nan_loss_valid_prefix_is_finite():
    # iterates: 1, 0.4, -1.1; the loss of theta_2 = -1.1 is the first non-finite value, so
    # the run diverged at step 2 and the valid prefix is theta_0, theta_1.
    traj = dc.run(dc.gd(0.6), _log_loss, jnp.array([1.0]), 6)
    assert int(traj.diverged_at) == 2
    prefix = dc.valid_prefix(np.asarray(traj.loss), traj.diverged_at)
    np.testing.assert_allclose(prefix, [0.0, math.log(0.4)], rtol=1e-14)


def test_vmap_of_run_over_eta_grid_equals_separate_runs():
    A = np.diag([1.0, 3.0])
    prob = dc.quadratic(A, theta0=[1.0, -0.5])
    etas = np.array([0.05, 0.3, 0.6, 0.7])  # 0.7 * 3 = 2.1 > 2: the last one diverges
    n, max_norm = 25, 2.0

    def run_gd(eta):
        return dc.run(dc.gd(eta), prob.loss, prob.theta0, n, max_norm=max_norm)

    batched = jax.jit(jax.vmap(run_gd))(jnp.asarray(etas))
    single_run = jax.jit(run_gd)  # compiled once, then one separate run per eta
    assert batched.params.shape == (len(etas), n + 1, 2)
    assert int(batched.diverged_at[-1]) > 0
    assert np.all(np.asarray(batched.diverged_at[:-1]) == -1)
    for i, eta in enumerate(etas):
        single = single_run(float(eta))
        np.testing.assert_allclose(np.asarray(batched.params[i]), np.asarray(single.params), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(np.asarray(batched.loss[i]), np.asarray(single.loss), rtol=1e-13, atol=1e-15)
        assert int(batched.diverged_at[i]) == int(single.diverged_at)
    # the diverging one: |1 - 0.7 * 3| = 1.1 along the second axis, |theta0_2| = 0.5
    expected = _first_step_beyond(1.1, 0.5, max_norm)
    # norm includes the (decaying) first coordinate; it is < 1e-3 by then, so the same step
    assert int(batched.diverged_at[-1]) == expected


# ----------------------------------------------------------------------------- chains
N_CHAINS, CHAIN_STEPS, CHAIN_ETA = 4000, 2, 0.5


@pytest.fixture(scope="module")
def sgd_chains(nl_problem):
    """run_chains of SGD (batch 4 of 24) on normalized_linear, jitted once as a function of the key."""
    grad_fn = dc.minibatch_grad(nl_problem, 4)
    return jax.jit(
        lambda key: dc.run_chains(
            dc.gd(CHAIN_ETA),
            nl_problem.loss,
            nl_problem.theta0,
            CHAIN_STEPS,
            grad_fn=grad_fn,
            key=key,
            n_chains=N_CHAINS,
        )
    )


def test_run_chains_reproducible_and_independent(nl_problem, sgd_chains):
    a = sgd_chains(jax.random.PRNGKey(0))
    b = sgd_chains(jax.random.PRNGKey(0))
    c = sgd_chains(jax.random.PRNGKey(1))
    n, s = N_CHAINS, CHAIN_STEPS + 1
    assert a.params.shape == (n, s, 3) and a.loss.shape == (n, s) and a.diverged_at.shape == (n,)
    np.testing.assert_array_equal(np.asarray(a.params), np.asarray(b.params))  # same key: same chains
    assert not np.allclose(np.asarray(a.params[:10, -1]), np.asarray(c.params[:10, -1]))  # other key
    # chains of one call are different from each other (no shared noise), all start at theta0
    P = np.asarray(a.params)
    np.testing.assert_array_equal(P[:, 0], np.broadcast_to(np.asarray(nl_problem.theta0), (n, 3)))
    assert not np.allclose(P[0, -1], P[1, -1]) and not np.allclose(P[1, -1], P[2, -1])
    # two draws from C(24, 4) = 10626 possible batches per chain: nearly all chains distinct
    assert len(np.unique(np.round(P[:, -1], 12), axis=0)) > 0.9 * n


def test_mean_of_sgd_chains_after_one_step_is_the_gd_step(nl_problem, sgd_chains):
    prob = nl_problem
    eta = CHAIN_ETA
    chains = sgd_chains(jax.random.PRNGKey(42))
    n_chains = N_CHAINS
    step1 = np.asarray(chains.params[:, 1])
    gd_step = np.asarray(prob.theta0 - eta * jax.jit(jax.grad(prob.loss))(prob.theta0))
    stderr = step1.std(axis=0) / np.sqrt(n_chains)
    assert np.all(step1.std(axis=0) > 1e-3)  # SGD really is noisy here
    assert np.all(np.abs(step1.mean(axis=0) - gd_step) < 5 * stderr)


def test_sgd_with_full_batch_equals_gd(nl_problem):
    prob = nl_problem
    grad_fn = dc.minibatch_grad(prob, 24)  # full batch: SGD is GD, whatever the key

    @jax.jit
    def both(key):
        sgd = dc.run(dc.gd(0.3), prob.loss, prob.theta0, 4, grad_fn=grad_fn, key=key)
        return sgd, dc.run(dc.gd(0.3), prob.loss, prob.theta0, 4)

    sgd, gd = both(jax.random.PRNGKey(9))
    np.testing.assert_allclose(np.asarray(sgd.params), np.asarray(gd.params), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("every", [2, 5, 25])
def test_run_every_keeps_exactly_the_subsampled_trajectory(every):
    """every=e must give iterates e, 2e, ... of the full run, bit for bit, and the same divergence step."""
    A = jnp.diag(jnp.array([1.0, 3.0]))
    loss = lambda th: 0.5 * th @ A @ th
    for eta in (0.3, 0.8):  # 0.8 * 3 > 2: diverges, at a step that is not a multiple of every
        full = dc.run(dc.gd(eta), loss, jnp.array([1.0, 1.0]), 50, max_norm=1e3)
        sub = dc.run(dc.gd(eta), loss, jnp.array([1.0, 1.0]), 50, max_norm=1e3, every=every)
        np.testing.assert_array_equal(sub.params, full.params[::every])
        np.testing.assert_array_equal(sub.loss, full.loss[::every])
        assert int(sub.diverged_at) == int(full.diverged_at)
    assert int(full.diverged_at) > 0 and int(full.diverged_at) % every != 0


def test_run_every_with_stochastic_gradients_uses_the_same_noise(nl_problem):
    grad_fn = dc.minibatch_grad(nl_problem, 8)
    kw = dict(grad_fn=grad_fn, key=jax.random.PRNGKey(3))
    full = dc.run(dc.gd(0.1, lam=0.01), nl_problem.loss, nl_problem.theta0, 40, **kw)
    sub = dc.run(dc.gd(0.1, lam=0.01), nl_problem.loss, nl_problem.theta0, 40, every=8, **kw)
    np.testing.assert_array_equal(sub.params, full.params[::8])


def test_run_every_must_divide_n_steps():
    with pytest.raises(ValueError, match="every must divide n_steps, got every=3, n_steps=10"):
        dc.run(dc.gd(0.1), lambda th: jnp.sum(th**2), jnp.ones(2), 10, every=3)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        dc.run(dc.gd(0.1), lambda th: jnp.sum(th**2), jnp.ones(2), 10, every=0)


# ----------------------------------------------------------------------------- recorded gradients
def test_run_records_no_gradients_by_default():
    traj = dc.run(dc.gd(0.1), lambda th: jnp.sum(th**2), jnp.ones(2), 5)
    assert traj.grads is None
    # a 5-field named tuple since issue 18 added Trajectory.observed (it had 4 fields)
    params, loss, diverged_at, grads, observed = traj
    assert grads is None and observed is None and params.shape == (6, 2)


def test_recorded_minibatch_gradients_are_those_the_steps_used(nl_problem):
    grad_fn = dc.minibatch_grad(nl_problem, 4)
    key, n = jax.random.PRNGKey(5), 30
    traj = dc.run(dc.heavy_ball(0.2, beta=0.5, lam=0.01), nl_problem.loss, nl_problem.theta0, n,
                  grad_fn=grad_fn, key=key, record_grads=True)
    # replay: the same minibatch (the step's key) at every iterate the run stepped from. Step k's
    # key is jax.random.fold_in(key, k) (changed on purpose in issue 18; it was split(key, n)[k],
    # which made the noise depend on n_steps)
    step_keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(n))
    replay = jax.vmap(grad_fn)(traj.params[:-1], step_keys)
    assert traj.grads.shape == (n, 3)
    np.testing.assert_allclose(traj.grads, replay, rtol=1e-12, atol=1e-15)
    # and they are not the full-batch gradients (so the check above can tell them apart)
    full = jax.vmap(jax.grad(nl_problem.loss))(traj.params[:-1])
    assert np.max(np.abs(np.asarray(traj.grads - full))) > 1e-3
    # stepping with them reproduces the run: m_{k+1} = beta m_k + g_k + lam theta_k, theta -= eta m
    theta, m = np.asarray(nl_problem.theta0), np.zeros(3)
    for k in range(n):
        m = 0.5 * m + np.asarray(traj.grads[k]) + 0.01 * theta
        theta = theta - 0.2 * m
    np.testing.assert_allclose(theta, traj.params[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("every", [1, 5])
def test_recorded_gradients_with_every_and_after_divergence(every):
    A = jnp.diag(jnp.array([1.0, 3.0]))
    loss = lambda th: 0.5 * th @ A @ th
    traj = dc.run(dc.gd(0.8), loss, jnp.array([1.0, 1.0]), 50, max_norm=1e3, every=every,
                  record_grads=True)  # diverges: |1 - 0.8 * 3| = 1.4
    assert int(traj.diverged_at) > 0
    assert traj.grads.shape == (50 // every, 2)
    expected = jax.vmap(jax.grad(loss))(traj.params[:-1])  # at each saved iterate (frozen ones too)
    np.testing.assert_allclose(traj.grads, expected, rtol=1e-13)
    assert np.all(np.isfinite(np.asarray(traj.grads)))


# ----------------------------------------------------------------------------- runs without a loss
def test_stochastic_run_without_a_loss_takes_the_same_steps(nl_problem):
    grad_fn = dc.minibatch_grad(nl_problem, 4)
    kw = dict(grad_fn=grad_fn, key=jax.random.PRNGKey(11), every=5, record_grads=True)
    with_loss = dc.run(dc.heavy_ball(0.2, beta=0.5), nl_problem.loss, nl_problem.theta0, 40, **kw)
    without = dc.run(dc.heavy_ball(0.2, beta=0.5), None, nl_problem.theta0, 40, **kw)
    assert without.loss is None and with_loss.loss.shape == (9,)
    np.testing.assert_array_equal(without.params, with_loss.params)
    np.testing.assert_array_equal(without.grads, with_loss.grads)
    assert int(without.diverged_at) == int(with_loss.diverged_at) == -1


def test_run_without_a_loss_still_reports_divergence():
    A = jnp.diag(jnp.array([1.0, 3.0]))
    grad_fn = lambda th, key: A @ th  # noqa: E731  (deterministic; the key is unused)
    kw = dict(key=jax.random.PRNGKey(0), max_norm=1e3)
    without = dc.run(dc.gd(0.8), None, jnp.array([1.0, 1.0]), 50, grad_fn=grad_fn, **kw)
    reference = dc.run(dc.gd(0.8), lambda th: 0.5 * th @ A @ th, jnp.array([1.0, 1.0]), 50, max_norm=1e3)
    assert int(without.diverged_at) == int(reference.diverged_at) > 0  # |1 - 0.8 * 3| = 1.4
    np.testing.assert_array_equal(without.params, reference.params)  # frozen at the same iterate
    with pytest.raises(ValueError, match="loss is required unless grad_fn is given"):
        dc.run(dc.gd(0.1), None, jnp.ones(2), 10)


# ----------------------------------------------------------------------------- cost of a step
@pytest.mark.perf
def test_a_deterministic_step_evaluates_the_loss_once(count_primitives):
    # the loss and the gradient of an iterate come from one forward-backward pass: sin appears
    # once per evaluation (its derivative is a cos), so a run of any length has two sins, one at
    # the start and one in the scanned step. Evaluating the loss and the gradient apart would give three.
    loss = lambda th: jnp.sum(jnp.sin(th))  # noqa: E731
    jaxpr = jax.make_jaxpr(lambda th: dc.run(dc.gd(0.1), loss, th, 20).loss)(jnp.ones(2)).jaxpr
    assert count_primitives(jaxpr, "scan") >= 1
    assert count_primitives(jaxpr, "sin") == 2
    assert count_primitives(jaxpr, "cos") == 2


# ----------------------------------------------------------------------------- the key stream
def test_stochastic_run_noise_does_not_depend_on_n_steps(nl_problem):
    """Step k draws with fold_in(key, k): a shorter run is a prefix of a longer one with the same key."""
    grad_fn = dc.minibatch_grad(nl_problem, 4)
    kw = dict(grad_fn=grad_fn, key=jax.random.PRNGKey(21))
    short = dc.run(dc.gd(0.2), nl_problem.loss, nl_problem.theta0, 10, **kw)
    long = dc.run(dc.gd(0.2), nl_problem.loss, nl_problem.theta0, 40, **kw)
    np.testing.assert_array_equal(short.params, long.params[:11])
    # and a different key gives a different path (the check above could fail)
    other = dc.run(dc.gd(0.2), nl_problem.loss, nl_problem.theta0, 10, grad_fn=grad_fn, key=jax.random.PRNGKey(22))
    assert not np.allclose(np.asarray(other.params[-1]), np.asarray(short.params[-1]))


def test_chain_i_is_run_with_the_ith_split_key(nl_problem):
    grad_fn = dc.minibatch_grad(nl_problem, 4)
    key = jax.random.PRNGKey(8)
    chains = dc.run_chains(dc.gd(0.2), nl_problem.loss, nl_problem.theta0, 6, grad_fn=grad_fn, key=key, n_chains=3)
    for i, k in enumerate(jax.random.split(key, 3)):
        single = dc.run(dc.gd(0.2), nl_problem.loss, nl_problem.theta0, 6, grad_fn=grad_fn, key=k)
        np.testing.assert_allclose(chains.params[i], single.params, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- observers
def test_observer_accumulates_over_every_step_not_only_the_saved_ones():
    """An observer that sums |step|^2 sees all the steps, also those that every= does not save."""
    A = jnp.diag(jnp.array([1.0, 3.0]))
    loss = lambda th: 0.5 * th @ A @ th  # noqa: E731
    obs = dc.Observer(init=lambda th: jnp.zeros(()),
                      update=lambda s, th, new, g: s + jnp.sum((new - th) ** 2))
    full = dc.run(dc.gd(0.1), loss, jnp.array([1.0, 1.0]), 20)
    sub = dc.run(dc.gd(0.1), loss, jnp.array([1.0, 1.0]), 20, every=5, observe=obs)
    steps2 = np.sum(np.diff(np.asarray(full.params), axis=0) ** 2, axis=1)
    expected = np.concatenate([[0.0], np.cumsum(steps2)])[::5]
    assert full.observed is None and sub.observed.shape == (5,)
    np.testing.assert_allclose(np.asarray(sub.observed), expected, rtol=1e-13)


def test_observer_valid_declares_iterates_diverged():
    # GD on L = 1/2 th^2 from 1 with eta = 0.1: th_k = 0.9^k; "valid" only while th > 0.5
    obs = dc.Observer(init=lambda th: jnp.zeros(()), update=lambda s, th, new, g: s + 1,
                      valid=lambda th: th[0] > 0.5)
    traj = dc.run(dc.gd(0.1), lambda th: 0.5 * jnp.sum(th**2), jnp.array([1.0]), 20, observe=obs)
    k = int(np.argmax(0.9 ** np.arange(21) <= 0.5))  # 0.9^7 = 0.478
    assert int(traj.diverged_at) == k == 7
    np.testing.assert_allclose(np.asarray(traj.params[k:, 0]), 0.9 ** (k - 1), rtol=1e-13)
    np.testing.assert_array_equal(np.asarray(traj.observed[k:]), k - 1)  # frozen with the iterates
