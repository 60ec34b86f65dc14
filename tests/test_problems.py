"""The book's loss functions: closed forms and symmetries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc


# ----------------------------------------------------------------------------- quadratic
def test_quadratic_gradient_and_value(rng):
    A = rng.standard_normal((4, 4))  # not symmetric: the loss uses its symmetric part
    b = rng.standard_normal(4)
    theta = rng.standard_normal(4)
    prob = dc.quadratic(A, b=b)
    np.testing.assert_array_equal(np.asarray(prob.params0), np.ones(4))
    S = 0.5 * (A + A.T)
    value, grad = jax.jit(jax.value_and_grad(prob.loss))(jnp.asarray(theta))
    assert float(value) == pytest.approx(0.5 * theta @ A @ theta - b @ theta, rel=1e-13)
    np.testing.assert_allclose(np.asarray(grad), S @ theta - b, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- bilinear
def bilinear_grad_closed_form(theta, x, y):
    r = y - x * theta[0] * theta[1]
    return -x * r * np.array([theta[1], theta[0]])


@pytest.mark.parametrize("x,y", [(2.0, 1.5), (-0.7, 3.0)])
def test_bilinear_gradient_closed_form(rng, x, y):
    prob = dc.bilinear(x=x, y=y)
    grad = jax.jit(jax.grad(prob.loss))
    for theta in rng.standard_normal((5, 2)):
        np.testing.assert_allclose(
            np.asarray(grad(jnp.asarray(theta))), bilinear_grad_closed_form(theta, x, y), rtol=1e-13, atol=1e-14
        )


def test_bilinear_default_start_residual_and_hessian_spectrum():
    prob = dc.bilinear()
    np.testing.assert_array_equal(np.asarray(prob.params0), [1.0, 0.25])
    # residual r = y - x th1 th2 = 1.5 - 2 * 0.25 = 1, so L = 1/2
    assert float(prob.loss(prob.params0)) == pytest.approx(0.5, abs=1e-15)
    H = np.asarray(jax.jit(jax.hessian(prob.loss))(prob.params0))
    # closed form: x^2 (th2, th1)(th2, th1)^T - x r [[0, 1], [1, 0]]
    np.testing.assert_allclose(H, [[0.25, -1.0], [-1.0, 4.0]], atol=1e-14)
    np.testing.assert_allclose(np.linalg.eigvalsh(H), [0.0, 4.25], atol=1e-12)


def test_bilinear_minima_form_the_hyperbola():
    prob = dc.bilinear(x=2.0, y=1.5)
    for t1 in (0.5, 1.0, -3.0):
        assert float(prob.loss(jnp.array([t1, 0.75 / t1]))) == pytest.approx(0.0, abs=1e-28)


# ----------------------------------------------------------------------------- scale invariance
SCALES = (0.01, 0.3, 2.0, 17.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dc.angle_toy(c=2.5, theta0=(0.3, -1.2)),
        lambda: dc.great_circle(dim=4, theta0=(0.3, -1.2, 0.8, 0.5)),
        lambda: dc.great_circle(dim=3),
        None,  # the session's normalized_linear problem
    ],
    ids=["angle_toy", "great_circle4", "great_circle3", "normalized_linear"],
)
def test_scale_invariant_losses(make, nl_problem):
    prob = make() if make is not None else nl_problem
    loss = jax.jit(prob.loss)
    theta = prob.params0
    base = float(loss(theta))
    for a in SCALES:
        assert float(loss(a * theta)) == pytest.approx(base, rel=1e-13, abs=1e-15)
    # Euler: a 0-homogeneous function has <theta, grad f(theta)> = 0 (and a gradient that is not 0)
    g = jax.jit(jax.grad(prob.loss))(theta)
    assert float(jnp.linalg.norm(g)) > 1e-3
    assert abs(float(jnp.vdot(theta, g))) < 1e-13 * float(jnp.linalg.norm(theta) * jnp.linalg.norm(g)) + 1e-15


def test_angle_toy_gradient_norm_is_c_over_norm(rng):
    c = 2.5
    prob = dc.angle_toy(c=c)
    grad = jax.jit(jax.grad(prob.loss))
    for theta in rng.standard_normal((5, 2)) * np.array([[3.0], [0.2], [1.0], [10.0], [0.05]]):
        g = np.asarray(grad(jnp.asarray(theta)))
        assert np.linalg.norm(g) == pytest.approx(c / np.linalg.norm(theta), rel=1e-13)
        # the gradient of c*atan2(th2, th1) is c (-th2, th1) / |th|^2
        np.testing.assert_allclose(g, c * np.array([-theta[1], theta[0]]) / (theta @ theta), rtol=1e-13)


def test_great_circle_closed_form():
    prob = dc.great_circle(dim=3)
    # L(x) = 1/2 sum_{j>=3} x_j^2 / |x|^2
    assert float(prob.loss(jnp.array([1.0, 0.0, 1.0]))) == pytest.approx(0.25, rel=1e-14)
    assert float(prob.loss(jnp.array([3.0, -4.0, 0.0]))) == 0.0
    np.testing.assert_allclose(np.asarray(prob.params0), np.ones(3) / np.sqrt(3), rtol=1e-15)
    assert float(prob.loss(prob.params0)) == pytest.approx(0.5 / 3, rel=1e-14)


def test_normalized_linear_closed_form(nl_problem):
    prob = nl_problem
    X, y = (np.asarray(a) for a in prob.data)
    assert X.shape == (24, 3) and y.shape == (24,)
    w = np.asarray(prob.params0)
    expected = 0.5 * np.mean((y - X @ w / np.linalg.norm(w)) ** 2)
    assert float(prob.loss(prob.params0)) == pytest.approx(expected, rel=1e-13)


def _scale_first_layer_columns(params, a):
    (W1, b1), *rest = params
    return [(W1 * a[None, :], b1), *rest]


def test_mlp_with_normalization_is_invariant_to_per_column_scaling_of_first_layer(rng, mlp_norm):
    prob = mlp_norm
    a = np.exp(rng.uniform(-2.0, 2.0, size=4))  # a different positive factor per hidden unit
    loss = jax.jit(prob.loss)
    base = float(loss(prob.params0))
    assert float(loss(_scale_first_layer_columns(prob.params0, a))) == pytest.approx(base, rel=1e-12)
    # minibatch losses too (statistics of the batch itself)
    batch = jax.tree_util.tree_map(lambda v: v[:8], prob.data)
    bl = jax.jit(prob.batch_loss)
    assert float(bl(_scale_first_layer_columns(prob.params0, a), batch)) == pytest.approx(
        float(bl(prob.params0, batch)), rel=1e-12
    )
    # per-column Euler identity: sum_i W1_ij dL/dW1_ij = 0 for every hidden unit j
    g = jax.jit(jax.grad(prob.loss))(prob.params0)
    euler = np.sum(np.asarray(prob.params0[0][0]) * np.asarray(g[0][0]), axis=0)
    np.testing.assert_allclose(euler, 0.0, atol=1e-13)
    assert np.linalg.norm(np.asarray(g[0][0])) > 1e-4


def test_mlp_without_normalization_is_not_scale_invariant(rng, mlp_plain):
    prob = mlp_plain
    a = np.exp(rng.uniform(-2.0, 2.0, size=4))
    loss = jax.jit(prob.loss)
    base = float(loss(prob.params0))
    assert abs(float(loss(_scale_first_layer_columns(prob.params0, a))) - base) > 1e-4 * base


def test_mlp_structure_and_closed_form_forward(mlp_plain, mlp_norm):
    (W1, b1), (W2, b2) = (tuple(np.asarray(a) for a in layer) for layer in mlp_plain.params0)
    assert W1.shape == (3, 4) and b1.shape == (4,) and W2.shape == (4, 2) and b2.shape == (2,)
    X, Y = (np.asarray(a) for a in mlp_plain.data)
    assert X.shape == (16, 3) and Y.shape == (16, 2)
    np.testing.assert_array_equal(Y[:, 0], Y[:, 1])  # one scalar target, tiled
    b1 = b1 + 0.3  # a non-zero bias, so that its place in the forward pass is checked
    params = [(jnp.asarray(W1), jnp.asarray(b1)), mlp_plain.params0[1]]
    losses = jax.jit(lambda p: (mlp_plain.loss(p), mlp_norm.loss(p)))(params)
    out = np.tanh(X @ W1 + b1) @ W2 + b2
    assert float(losses[0]) == pytest.approx(0.5 * np.mean(np.sum((out - Y) ** 2, axis=1)), rel=1e-13)
    # with normalisation: first-layer bias ignored, pre-activations standardised per unit
    Z = X @ W1
    Z = (Z - Z.mean(0)) / Z.std(0)
    out = np.tanh(Z) @ W2 + b2
    assert float(losses[1]) == pytest.approx(0.5 * np.mean(np.sum((out - Y) ** 2, axis=1)), rel=1e-12)


# ----------------------------------------------------------------------------- minibatches
def test_minibatch_grad_mean_over_keys_is_full_gradient(nl_problem):
    prob = nl_problem
    full = np.asarray(jax.jit(jax.grad(prob.loss))(prob.params0))
    grad_fn = dc.minibatch_grad(prob, batch_size=4)
    keys = jax.random.split(jax.random.PRNGKey(11), 4000)
    samples = np.asarray(jax.jit(jax.vmap(grad_fn, in_axes=(None, 0)))(prob.params0, keys))
    # single minibatch gradients are noisy ...
    spread = samples.std(axis=0)
    assert np.linalg.norm(samples[0] - full) > 1e-3
    assert np.all(spread > 1e-3)
    # ... but their mean is the full-batch gradient within a few standard errors
    stderr = spread / np.sqrt(len(keys))
    assert np.all(np.abs(samples.mean(axis=0) - full) < 5 * stderr)


def test_minibatch_grad_with_full_batch_is_exact(nl_problem):
    prob = nl_problem
    full = np.asarray(jax.jit(jax.grad(prob.loss))(prob.params0))
    grad_fn = jax.jit(dc.minibatch_grad(prob, batch_size=24))
    for seed in (0, 1, 2):
        g = np.asarray(grad_fn(prob.params0, jax.random.PRNGKey(seed)))
        np.testing.assert_allclose(g, full, rtol=1e-12, atol=1e-15)


def test_minibatch_grad_on_mlp_pytree_has_params_structure(mlp_plain):
    prob = mlp_plain
    grad_fn = dc.minibatch_grad(prob, 16)
    g, full = jax.jit(lambda p, k: (grad_fn(p, k), jax.grad(prob.loss)(p)))(prob.params0, jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(prob.params0)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("batch_size", [0, -1, 25, 2.5, True])
def test_minibatch_grad_rejects_bad_batch_size(batch_size, nl_problem):
    prob = nl_problem
    with pytest.raises(ValueError, match="batch_size"):
        dc.minibatch_grad(prob, batch_size)


def test_minibatch_grad_needs_data():
    with pytest.raises(ValueError, match="no data"):
        dc.minibatch_grad(dc.bilinear(), 1)


def test_minibatch_gradient_of_a_batch_norm_network_is_biased():
    """The documented exception: batch statistics make E[minibatch gradient] ≠ full gradient.

    Exact mean over all C(8, 4) minibatches (what ``minibatch_grad`` samples uniformly), against
    the same mean for a per-example average loss, where it is exact.
    """
    import itertools

    from jax.flatten_util import ravel_pytree

    subsets = [np.array(s) for s in itertools.combinations(range(8), 4)]

    def subset_mean_gap(prob):
        X, Y = prob.data
        grad = jax.jit(lambda b: ravel_pytree(jax.grad(prob.batch_loss)(prob.params0, b))[0])
        mean = sum(grad((X[s], Y[s])) for s in subsets) / len(subsets)
        full = ravel_pytree(jax.grad(prob.loss)(prob.params0))[0]
        return float(jnp.linalg.norm(mean - full) / jnp.linalg.norm(full))

    assert subset_mean_gap(dc.normalized_linear(jax.random.PRNGKey(0), n=8, d=3)) < 1e-12
    assert subset_mean_gap(dc.mlp(jax.random.PRNGKey(0), (3, 4, 1), n=8, normalize=True)) > 0.05
