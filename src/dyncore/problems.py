"""Loss functions of the book, as pure functions of a parameter pytree.

Each constructor returns a :class:`Problem`: the full-batch loss, a starting point, and, for problems
built on data, the per-batch loss and the data set so that minibatch (SGD) gradients can be drawn
with :func:`minibatch_grad`. Weight decay is *not* part of a problem's loss: it belongs to the
optimizer or the flow (argument ``lam``), as in the papers.

Besides the toy models and synthetic data, :func:`digits` is a small real classification problem:
scikit-learn's 1,797 handwritten 8x8 digits, shipped with dyncore (``dyncore/data/digits.npz``;
no download, no scikit-learn needed at run time).
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike, DTypeLike

from . import prng
from .validation import check_positive_int

__all__ = [
    "Problem",
    "quadratic",
    "bilinear",
    "angle_toy",
    "great_circle",
    "normalized_linear",
    "mlp",
    "digits",
    "digits_data",
    "accuracy",
    "minibatch_grad",
]

Params = Any
Batch = Any


class Problem(NamedTuple):
    """A loss with a starting point (and, optionally, data for minibatches).

    Attributes:
      name: a short human-readable name, used in figure titles.
      loss: full-batch loss ``loss(params) -> scalar``.
      theta0: the default starting point.
      batch_loss: ``batch_loss(params, batch) -> scalar`` for a batch of the data (or ``None``).
      data: the data set as a pytree of arrays with a leading example axis (or ``None``).
      predict: for classifiers, ``predict(params, inputs) -> logits`` of a batch of inputs (or
        ``None``); see :func:`accuracy`.

    Example:
      >>> prob = Problem("parabola", lambda t: 0.5 * t**2, 2.0)
      >>> prob.loss(prob.theta0), prob.batch_loss, prob.predict
      (2.0, None, None)
    """

    name: str
    loss: Callable[[Params], jax.Array]
    theta0: Params
    batch_loss: Callable[[Params, Batch], jax.Array] | None = None
    data: Batch | None = None
    predict: Callable[[Params, jax.Array], jax.Array] | None = None


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

    Example:
      >>> prob = quadratic([[2.0, 0.0], [0.0, 1.0]], b=[1.0, 0.0])
      >>> float(prob.loss(prob.theta0))  # (2 + 1) / 2 - 1
      0.5
      >>> jax.grad(prob.loss)(prob.theta0).tolist()  # A theta - b
      [1.0, 1.0]
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

    Example:
      >>> prob = bilinear()
      >>> prob.theta0.tolist(), float(prob.loss(prob.theta0))
      ([1.0, 0.25], 0.5)
      >>> float(prob.loss(jnp.array([3.0, 0.25])))  # on the hyperbola theta1 * theta2 = y / x
      0.0
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

    Example:
      >>> prob = angle_toy(c=2.0)
      >>> theta = jnp.array([1.0, 1.0])
      >>> round(float(prob.loss(theta)), 4), round(float(prob.loss(3.0 * theta)), 4)  # 2 * pi / 4
      (1.5708, 1.5708)
      >>> round(float(jnp.linalg.norm(jax.grad(prob.loss)(theta))), 4)  # c / |theta| = 2 / sqrt(2)
      1.4142
    """
    theta0 = jnp.asarray(theta0, dtype=jnp.result_type(float))

    def loss(theta):
        return c * jnp.arctan2(theta[1], theta[0])

    return Problem(f"angle toy (c={c:g})", loss, theta0)


def great_circle(dim: int = 3, theta0: ArrayLike | None = None) -> Problem:
    """Scale-invariant loss whose minimisers form a punctured plane (Li, Wang & Yu's "Toy G").

    .. math:: L(x) = \\tfrac12 \\sum_{j \\ge 3} \\bar x_j^2, \\qquad \\bar x = x / \\|x\\| .

    On the unit sphere the minimisers are the great circle in the :math:`(e_1, e_2)` plane.

    Example:
      >>> prob = great_circle(dim=3)  # default start: the unit vector (1, 1, 1) / sqrt(3)
      >>> round(float(prob.loss(prob.theta0)), 4), round(float(prob.loss(5.0 * prob.theta0)), 4)
      (0.1667, 0.1667)
      >>> float(prob.loss(jnp.array([3.0, -4.0, 0.0])))  # on the great circle
      0.0
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

    Example:
      >>> prob = normalized_linear(jax.random.PRNGKey(0), n=32, d=4)
      >>> X, y = prob.data
      >>> X.shape, y.shape, prob.theta0.shape
      ((32, 4), (32,), (4,))
      >>> w = prob.theta0
      >>> bool(jnp.isclose(prob.loss(2.5 * w), prob.loss(w), rtol=1e-5))  # scale-invariant in w
      True
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


def _standardize(z: jax.Array, axis: int | tuple[int, ...]) -> jax.Array:
    """Zero mean, unit standard deviation over ``axis`` (batch norm, no affine part, no epsilon)."""
    return (z - z.mean(axis)) / z.std(axis)


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

    Example:
      >>> prob = mlp(jax.random.PRNGKey(0), (3, 8, 1), n=32, normalize=True)
      >>> [(W.shape, b.shape) for W, b in prob.theta0]
      [((3, 8), (8,)), ((8, 1), (1,))]
      >>> (W1, b1), rest = prob.theta0
      >>> scaled = [(W1.at[:, 0].multiply(3.7), b1), rest]  # one hidden unit's column
      >>> bool(jnp.isclose(prob.loss(scaled), prob.loss(prob.theta0), rtol=1e-5))
      True
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
                z = _standardize(z, 0)
            else:
                z = z + b
            h = jnp.tanh(z) if i < len(params) - 1 else z
        return h

    def batch_loss(params, batch):
        Xb, Yb = batch
        return 0.5 * jnp.mean(jnp.sum((forward(params, Xb) - Yb) ** 2, axis=-1))

    name = f"MLP {'-'.join(map(str, sizes))}{' + norm' if normalize else ''}"
    return Problem(name, lambda p: batch_loss(p, (X, Y)), params, batch_loss, (X, Y))


# ----------------------------------------------------------------------------- handwritten digits
#: number of images in the shipped digits data set
DIGITS_N = 1797
_DIGITS_MODELS = ("mlp", "cnn")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The shipped ``(X, y)``, uint8, read once (read-only arrays: the cache is shared)."""
    with importlib.resources.files(__package__).joinpath("data", "digits.npz").open("rb") as f:
        with np.load(f) as npz:
            X, y = npz["X"], npz["y"]
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


def _float_dtype(dtype: DTypeLike | None) -> np.dtype:
    """float32 by default (whatever JAX's x64 mode), float64 on request (needs x64)."""
    try:
        dt = np.dtype(np.float32 if dtype is None else dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if dt == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:  # x64 off
        raise ValueError("dtype float64 needs JAX's x64 mode: jax.config.update('jax_enable_x64', True)")
    return dt


def digits_data(*, dtype: DTypeLike | None = None) -> tuple[jax.Array, jax.Array]:
    """All 1,797 handwritten digits shipped with dyncore: inputs in ``[0, 1]`` and labels.

    The images are scikit-learn's ``load_digits()`` (the test set of the UCI "Optical Recognition
    of Handwritten Digits" data, CC BY 4.0; see ``dyncore/data/README.md``), in the same order:
    8x8 images of pixel counts 0..16, divided by 16 here, one flattened row-major image per row.

    Args:
      dtype: float32 (default, also under JAX's x64 mode) or float64 (needs x64).

    Returns:
      ``(X, y)``: inputs of shape ``(1797, 64)`` and dtype ``dtype``, int32 labels ``(1797,)``.

    Raises:
      ValueError: for a ``dtype`` other than float32/float64, or float64 without x64.

    Example:
      >>> X, y = digits_data()
      >>> X.shape, X.dtype, y.shape, y.dtype
      ((1797, 64), dtype('float32'), (1797,), dtype('int32'))
      >>> float(X.min()), float(X.max()), y[:10].tolist()
      (0.0, 1.0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    dt = _float_dtype(dtype)
    X, y = _digits_arrays()
    return jnp.asarray(X.astype(dt) / dt.type(16)), jnp.asarray(y.astype(np.int32))


def _digits_mlp_logits(params: Params, X: jax.Array, normalize: bool) -> jax.Array:
    (W1, b1), (W2, b2) = params
    z = X @ W1
    z = _standardize(z, 0) if normalize else z + b1
    return jnp.tanh(z) @ W2 + b2


def _digits_cnn_logits(params: Params, X: jax.Array, normalize: bool) -> jax.Array:
    (K, b1), (W2, b2) = params
    images = X.reshape(X.shape[0], 8, 8, 1)
    z = jax.lax.conv_general_dilated(images, K, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    z = _standardize(z, (0, 1, 2)) if normalize else z + b1
    return jnp.tanh(z).reshape(X.shape[0], -1) @ W2 + b2


def _digits_init(key: jax.Array, shapes: list[tuple[tuple[int, ...], int]], dt: np.dtype) -> list:
    """``(W, 0)`` pairs, ``W`` Gaussian with variance 1 / fan-in (``shapes``: (W shape, fan-in))."""
    params = []
    for k, (shape, fan_in) in zip(jax.random.split(key, len(shapes)), shapes):
        W = jax.random.normal(k, shape, dt) / np.sqrt(fan_in).astype(dt)
        params.append((W, jnp.zeros(shape[-1], dt)))
    return params


def digits(
    key: jax.Array,
    *,
    model: str = "mlp",
    hidden: int = 128,
    channels: int = 8,
    normalize: bool = False,
    dtype: DTypeLike | None = None,
    n: int | None = None,
) -> Problem:
    """Classify the handwritten 8x8 digits (real data, shipped with dyncore) with a small tanh net.

    The data are those of :func:`digits_data`: inputs divided by 16 (so in ``[0, 1]``, not
    standardised), integer labels 0..9; ``n`` takes the first ``n`` of the 1,797 examples (the
    classes cycle, so every prefix is nearly balanced), leaving the rest for held-out checks. The
    loss is the mean softmax cross-entropy (``optax.softmax_cross_entropy_with_integer_labels``);
    it starts near :math:`\\log 10 \\approx 2.3`. Parameters are a list of two ``(W, b)`` pairs:

    * ``model="mlp"``: a 64-``hidden``-10 MLP, :math:`\\tanh(X W_1 + b_1) W_2 + b_2`;
    * ``model="cnn"``: one 3x3 convolution with ``channels`` filters (padding ``SAME``, kernel of
      shape ``(3, 3, 1, channels)``, HWIO), tanh, then a dense 10-way layer on the
      ``8 * 8 * channels`` features.

    Weights are Gaussian with variance 1/fan-in, biases zero, drawn from ``key``. With
    ``normalize=True`` the first layer's pre-activations are standardised over the batch, per
    hidden unit (MLP) or per filter over the batch and the 64 positions (CNN), without affine
    parameters and without :math:`\\varepsilon`, and the first bias is unused (its gradient is 0),
    as in :func:`mlp`: the loss is then invariant under rescaling any column of :math:`W_1` (any
    filter) by :math:`c > 0`. Statistics come from the batch evaluated, so ``predict`` needs at
    least two inputs and minibatch gradients are biased (see :func:`minibatch_grad`).

    Args:
      key: PRNG key for the initial weights (the data are fixed).
      model: ``"mlp"`` or ``"cnn"``.
      hidden: hidden width of the MLP.
      channels: number of filters of the CNN.
      normalize: normalise the first layer (scale-invariant weights).
      dtype: float32 (default, also under JAX's x64 mode) or float64 (needs x64), for the data and
        the weights.
      n: number of examples, from the start of the data set (default: all 1,797).

    Returns:
      A :class:`Problem` with ``data = (X, y)``, ``batch_loss`` for :func:`minibatch_grad` and
      ``predict(params, X) -> logits`` for :func:`accuracy`.

    Raises:
      ValueError: for an unknown ``model``, a non-positive ``hidden``/``channels``, ``n`` out of
        ``[1, 1797]`` (``[2, 1797]`` with ``normalize``) or a bad ``dtype``.

    Example:
      >>> prob = digits(jax.random.PRNGKey(0))
      >>> prob.name
      'digits: MLP 64-128-10'
      >>> [(W.shape, W.dtype) for W, b in prob.theta0]
      [((64, 128), dtype('float32')), ((128, 10), dtype('float32'))]
      >>> round(float(prob.loss(prob.theta0)), 1)  # near log(10) = 2.30
      2.4
      >>> cnn = digits(jax.random.PRNGKey(0), model="cnn", channels=4, normalize=True, n=500)
      >>> cnn.name, cnn.theta0[0][0].shape, cnn.data[0].shape
      ('digits: CNN 3x3x4-10 + norm (n=500)', (3, 3, 1, 4), (500, 64))
    """
    if model not in _DIGITS_MODELS:
        raise ValueError(f"model must be one of {_DIGITS_MODELS}, got {model!r}")
    hidden = check_positive_int("hidden", hidden)
    channels = check_positive_int("channels", channels)
    dt = _float_dtype(dtype)
    lo = 2 if normalize else 1
    if n is None:
        n = DIGITS_N
    elif isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not lo <= n <= DIGITS_N:
        raise ValueError(f"n must be an integer in [{lo}, {DIGITS_N}]{' with normalize' if normalize else ''}, got {n!r}")
    n = int(n)
    X, y = digits_data(dtype=dt)
    X, y = X[:n], y[:n]
    if model == "mlp":
        theta0 = _digits_init(key, [((64, hidden), 64), ((hidden, 10), hidden)], dt)
        logits_fn, arch = _digits_mlp_logits, f"MLP 64-{hidden}-10"
    else:
        theta0 = _digits_init(key, [((3, 3, 1, channels), 9), ((64 * channels, 10), 64 * channels)], dt)
        logits_fn, arch = _digits_cnn_logits, f"CNN 3x3x{channels}-10"

    def predict(params: Params, inputs: jax.Array) -> jax.Array:
        return logits_fn(params, inputs, normalize)

    def batch_loss(params: Params, batch: Batch) -> jax.Array:
        Xb, yb = batch
        return optax.softmax_cross_entropy_with_integer_labels(predict(params, Xb), yb).mean()

    name = f"digits: {arch}{' + norm' if normalize else ''}{'' if n == DIGITS_N else f' (n={n})'}"
    return Problem(name, lambda p: batch_loss(p, (X, y)), theta0, batch_loss, (X, y), predict)


def accuracy(problem: Problem, params: Params, batch: Batch | None = None) -> jax.Array:
    """Fraction of correctly classified examples: ``mean(argmax(predict(params, X)) == y)``.

    Args:
      problem: a classification problem (one with ``predict``, e.g. from :func:`digits`).
      params: the parameters to evaluate.
      batch: ``(inputs, labels)`` to score (default: the problem's own ``data``), e.g. held-out
        examples from :func:`digits_data`.

    Returns:
      A scalar in ``[0, 1]`` of the logits' dtype (jit-friendly).

    Raises:
      ValueError: if the problem has no ``predict``, or no data and no ``batch`` is given.

    Example:
      >>> prob = digits(jax.random.PRNGKey(0), n=1000)
      >>> X, y = digits_data()
      >>> acc = accuracy(prob, prob.theta0, (X[1000:], y[1000:]))  # untrained, held out: chance
      >>> acc.shape, 0.0 <= float(acc) <= 0.3
      ((), True)
    """
    if problem.predict is None:
        raise ValueError(f"problem {problem.name!r} has no predict, so it has no accuracy")
    if batch is None:
        if problem.data is None:
            raise ValueError(f"problem {problem.name!r} has no data: pass a batch")
        batch = problem.data
    inputs, labels = batch
    logits = problem.predict(params, inputs)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels, dtype=logits.dtype)


def minibatch_grad(problem: Problem, batch_size: int) -> Callable[[Params, jax.Array], Params]:
    """Stochastic gradient of a data problem: the gradient on a random minibatch.

    Returns ``grad_fn(params, key)``, which draws ``batch_size`` examples without replacement
    with ``key`` and returns the gradient of ``problem.batch_loss`` on them. Its mean over keys is
    the full-batch gradient when the batch loss is an average of per-example losses; it is *not*
    for a network with batch normalization (``mlp(..., normalize=True)``), whose minibatch
    statistics make the minibatch gradient biased, as in practice. Pass it to
    :func:`dyncore.runner.run` as ``grad_fn``. The examples are those of
    ``jax.random.choice(key, n, (batch_size,), replace=False)``, drawn with the hash unrolled
    (``dyncore.prng``; several times faster inside a long scan).

    Raises:
      ValueError: if the problem has no data or ``batch_size`` is not in ``[1, n]``.

    Example:
      >>> prob = normalized_linear(jax.random.PRNGKey(0), n=32, d=4)
      >>> grad_fn = minibatch_grad(prob, 8)
      >>> grad_fn(prob.theta0, jax.random.PRNGKey(1)).shape
      (4,)
      >>> full = minibatch_grad(prob, 32)(prob.theta0, jax.random.PRNGKey(1))  # all examples
      >>> bool(jnp.allclose(full, jax.grad(prob.loss)(prob.theta0), rtol=1e-5, atol=1e-7))
      True
    """
    if problem.batch_loss is None or problem.data is None:
        raise ValueError(f"problem {problem.name!r} has no data, so it has no minibatch gradient")
    n = int(np.shape(jax.tree_util.tree_leaves(problem.data)[0])[0])
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    g = jax.grad(problem.batch_loss)

    def grad_fn(params, key):
        idx = prng.sample_without_replacement(key, n, batch_size)  # = jax.random.choice(replace=False)
        batch = jax.tree_util.tree_map(lambda a: a[idx], problem.data)
        return g(params, batch)

    return grad_fn
