"""Loss functions of the book, as pure functions of a parameter pytree.

Each constructor returns a :class:`Problem`: the full-batch loss, a starting point, and, for problems
built on data, the per-batch loss and the data set so that minibatch (SGD) gradients can be drawn
with :func:`minibatch_grad`. Weight decay is *not* part of a problem's loss: it belongs to the
optimizer or the flow (argument ``lam``), as in the papers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from . import _rng
from .validation import check_positive_int

__all__ = [
    "Problem",
    "quadratic",
    "bilinear",
    "angle_toy",
    "great_circle",
    "normalized_linear",
    "mlp",
    "minibatch_grad",
]

Params = Any
Batch = Any


class Problem(NamedTuple):
    """A loss with a starting point (and, optionally, data for minibatches).

    Attributes:
      name: a short human-readable name, used in figure titles.
      loss: full-batch loss ``loss(params) -> scalar``.
      params0: the default starting point.
      batch_loss: ``batch_loss(params, batch) -> scalar`` for a batch of the data (or ``None``).
      data: the data set as a pytree of arrays with a leading example axis (or ``None``).
    """

    name: str
    loss: Callable[[Params], jax.Array]
    params0: Params
    batch_loss: Callable[[Params, Batch], jax.Array] | None = None
    data: Batch | None = None


def quadratic(A: ArrayLike, theta0: ArrayLike | None = None, b: ArrayLike | None = None) -> Problem:
    """Quadratic loss :math:`L(\\theta) = \\tfrac12 \\theta^\\top A \\theta - b^\\top\\theta`.

    Its Hessian is :math:`(A + A^\\top)/2`, constant; gradient descent on it is linear, which makes it
    the book's exactly solvable model.

    Args:
      A: ``(d, d)`` matrix (symmetrised internally).
      theta0: starting point (default: all ones).
      b: optional linear term (default 0).

    Raises:
      ValueError: if ``A`` is not square or the shapes of ``theta0``/``b`` do not match.
    """
    A = jnp.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    d = A.shape[0]
    A = 0.5 * (A + A.T)
    b = jnp.zeros(d, A.dtype) if b is None else jnp.asarray(b, A.dtype)
    theta0 = jnp.ones(d, A.dtype) if theta0 is None else jnp.asarray(theta0, A.dtype)
    if b.shape != (d,) or theta0.shape != (d,):
        raise ValueError(f"b and theta0 must have shape ({d},), got {b.shape} and {theta0.shape}")

    def loss(theta):
        return 0.5 * theta @ A @ theta - b @ theta

    return Problem("quadratic", loss, theta0)


def bilinear(x: float = 2.0, y: float = 1.5, theta0: ArrayLike = (1.0, 0.25)) -> Problem:
    """The two-parameter bilinear model :math:`L(\\theta) = \\tfrac12 (y - x\\,\\theta_1\\theta_2)^2`.

    The smallest non-convex model with a whole curve of minima (the hyperbola
    :math:`\\theta_1\\theta_2 = y/x`) and a rescale symmetry; Barrett & Dherin and Cattaneo et al.
    use it, and so does every chapter of this book. At the default start the residual is 1 and the
    Hessian eigenvalues are 0 and 4.25.
    """
    theta0 = jnp.asarray(theta0, dtype=jnp.result_type(float))
    if theta0.shape != (2,):
        raise ValueError(f"theta0 must have shape (2,), got {theta0.shape}")

    def loss(theta):
        return 0.5 * (y - x * theta[0] * theta[1]) ** 2

    return Problem(f"bilinear (x={x:g}, y={y:g})", loss, theta0)


def angle_toy(c: float = 1.0, theta0: ArrayLike = (1.0, 0.0)) -> Problem:
    """Scale-invariant toy :math:`f(\\theta) = c\\,\\mathrm{atan2}(\\theta_2, \\theta_1)` on :math:`\\mathbb R^2`.

    :math:`f(a\\theta) = f(\\theta)` for :math:`a > 0`, and :math:`\\|\\nabla f\\| = c/\\|\\theta\\|`
    exactly, so the norm equilibrium under GD with weight decay is known in closed form
    (Miyagawa 2022, Sec. 5.1). The loss is unbounded below: it is a model of the norm dynamics,
    not of convergence.
    """
    theta0 = jnp.asarray(theta0, dtype=jnp.result_type(float))

    def loss(theta):
        return c * jnp.arctan2(theta[1], theta[0])

    return Problem(f"angle toy (c={c:g})", loss, theta0)


def great_circle(dim: int = 3, theta0: ArrayLike | None = None) -> Problem:
    """Scale-invariant loss whose minimisers form a punctured plane (Li, Wang & Yu's "Toy G").

    .. math:: L(x) = \\tfrac12 \\sum_{j \\ge 3} \\bar x_j^2, \\qquad \\bar x = x / \\|x\\| .

    On the unit sphere the minimisers are the great circle in the :math:`(e_1, e_2)` plane.
    """
    dim = check_positive_int("dim", dim)
    if dim < 3:
        raise ValueError(f"dim must be >= 3, got {dim}")
    if theta0 is None:
        theta0 = jnp.ones(dim) / jnp.sqrt(dim)
    theta0 = jnp.asarray(theta0, dtype=jnp.result_type(float))

    def loss(x):
        xbar = x / jnp.linalg.norm(x)
        return 0.5 * jnp.sum(xbar[2:] ** 2)

    return Problem(f"great circle (D={dim})", loss, theta0)


def _regression_data(key: jax.Array, n: int, d: int, noise: float) -> tuple[jax.Array, jax.Array]:
    kx, kw, kn = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d))
    w_true = jax.random.normal(kw, (d,)) / jnp.sqrt(d)
    y = jnp.tanh(X @ w_true) + noise * jax.random.normal(kn, (n,))
    return X, y


def normalized_linear(key: jax.Array, n: int = 64, d: int = 5, noise: float = 0.1) -> Problem:
    """Linear regression through a normalised weight, scale-invariant in :math:`w`.

    .. math:: L(w) = \\frac{1}{2n} \\sum_i \\big(y_i - \\langle x_i, w\\rangle / \\|w\\|\\big)^2 .

    The data are synthetic (``key`` seeds them): Gaussian inputs, targets from a tanh teacher plus
    Gaussian noise.
    """
    n, d = check_positive_int("n", n), check_positive_int("d", d)
    kd, kp = jax.random.split(key)
    X, y = _regression_data(kd, n, d, noise)

    def batch_loss(w, batch):
        Xb, yb = batch
        return 0.5 * jnp.mean((yb - Xb @ w / jnp.linalg.norm(w)) ** 2)

    return Problem(
        f"normalized linear (n={n}, d={d})",
        lambda w: batch_loss(w, (X, y)),
        jax.random.normal(kp, (d,)),
        batch_loss,
        (X, y),
    )


def mlp(
    key: jax.Array,
    sizes: tuple[int, ...] = (4, 16, 1),
    n: int = 128,
    *,
    normalize: bool = False,
    noise: float = 0.1,
) -> Problem:
    """A small tanh MLP on synthetic regression data, with or without a normalisation layer.

    Parameters are a list of ``(W, b)`` pairs. With ``normalize=True`` the first layer has no bias
    and its pre-activations are normalised per hidden unit over the batch (batch normalisation
    without affine parameters and without :math:`\\varepsilon`):

    .. math:: z = X W_1, \\qquad \\hat z_{:,j} = (z_{:,j} - \\mathrm{mean}(z_{:,j})) / \\mathrm{std}(z_{:,j}),

    so the loss is exactly invariant under rescaling each column of :math:`W_1`: a scale-invariant
    layer as in Miyagawa (2022) and Li, Wang & Yu (2022). The statistics are those of the batch the
    loss is evaluated on, so minibatch losses stay scale-invariant too; batches need at least two
    examples (one example has zero standard deviation).

    Args:
      key: PRNG key for the data and the initial parameters.
      sizes: layer widths ``(d_in, hidden..., d_out)``.
      n: number of examples.
      normalize: add the normalisation layer after the first linear layer.
      noise: standard deviation of the label noise.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
    for s in sizes:
        check_positive_int("sizes entries", s)
    n = check_positive_int("n", n)
    kd, kp = jax.random.split(key)
    X, y_scalar = _regression_data(kd, n, sizes[0], noise)
    Y = jnp.tile(y_scalar[:, None], (1, sizes[-1]))
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        kp, kw = jax.random.split(kp)
        W = jax.random.normal(kw, (a, b)) / jnp.sqrt(a)
        params.append((W, jnp.zeros(b)))

    def forward(params, Xb):
        h = Xb
        for i, (W, b) in enumerate(params):
            z = h @ W
            if i == 0 and normalize:
                z = (z - z.mean(0)) / z.std(0)
            else:
                z = z + b
            h = jnp.tanh(z) if i < len(params) - 1 else z
        return h

    def batch_loss(params, batch):
        Xb, Yb = batch
        return 0.5 * jnp.mean(jnp.sum((forward(params, Xb) - Yb) ** 2, axis=-1))

    name = f"MLP {'-'.join(map(str, sizes))}{' + norm' if normalize else ''}"
    return Problem(name, lambda p: batch_loss(p, (X, Y)), params, batch_loss, (X, Y))


def minibatch_grad(problem: Problem, batch_size: int) -> Callable[[Params, jax.Array], Params]:
    """Stochastic gradient of a data problem: the gradient on a random minibatch.

    Returns ``grad_fn(params, key)``, which draws ``batch_size`` examples without replacement
    with ``key`` and returns the gradient of ``problem.batch_loss`` on them. Its mean over keys is
    the full-batch gradient when the batch loss is an average of per-example losses; it is *not*
    for a network with batch normalization (``mlp(..., normalize=True)``), whose minibatch
    statistics make the minibatch gradient biased, as in practice. Pass it to
    :func:`dyncore.optimizers.run` as ``grad_fn``. The examples are those of
    ``jax.random.choice(key, n, (batch_size,), replace=False)``, drawn with the hash unrolled
    (``dyncore._rng``; several times faster inside a long scan).

    Raises:
      ValueError: if the problem has no data or ``batch_size`` is not in ``[1, n]``.
    """
    if problem.batch_loss is None or problem.data is None:
        raise ValueError(f"problem {problem.name!r} has no data, so it has no minibatch gradient")
    n = int(np.shape(jax.tree_util.tree_leaves(problem.data)[0])[0])
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    g = jax.grad(problem.batch_loss)

    def grad_fn(params, key):
        idx = _rng.sample_without_replacement(key, n, batch_size)  # = jax.random.choice(replace=False)
        batch = jax.tree_util.tree_map(lambda a: a[idx], problem.data)
        return g(params, batch)

    return grad_fn
