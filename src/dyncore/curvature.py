"""Curvature of a loss: Hessian-vector products, dense Hessians and their spectra.

All functions take a scalar loss ``loss(params)`` of a parameter pytree. Dense routines flatten the
pytree with :func:`jax.flatten_util.ravel_pytree` (fine for the book's toy models, up to a few
thousand parameters); :func:`top_eigenpairs` is matrix-free and needs only Hessian-vector products.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .trees import tmap
from .validation import check_hparams, check_positive_int

__all__ = [
    "hvp",
    "hvp_fd",
    "hessian",
    "hessian_eigh",
    "Eigenpairs",
    "top_eigenpairs",
    "sharpness",
    "SharpnessTrace",
    "track_sharpness",
    "with_decay",
    "decayed_spectrum",
]

Params = Any
Loss = Callable[[Params], jax.Array]

_tmap = tmap


def with_decay(loss: Loss, lam) -> Loss:
    """The loss with weight decay, :math:`L_\\lambda(\\theta) = L(\\theta) + \\tfrac\\lambda2\\|\\theta\\|^2`.

    Its Hessian is :math:`\\nabla^2 L + \\lambda I`: weight decay shifts every eigenvalue by :math:`\\lambda`.
    (:math:`\\|\\theta\\|^2 = \\sum \\theta^2` without conjugation, so the loss stays holomorphic.)

    Example:

    >>> import jax.numpy as jnp
    >>> float(with_decay(lambda th: jnp.sum(th), 0.5)(jnp.array([2.0])))   # 2 + 0.25 * 4
    3.0
    """

    def loss_lam(theta):
        return loss(theta) + 0.5 * lam * sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(theta))

    return loss_lam


def hvp(loss: Loss, params: Params, v: Params) -> Params:
    """Hessian-vector product :math:`\\nabla^2 L(\\theta)\\,v`, forward-over-reverse.

    Costs about two gradient evaluations and never forms the Hessian.

    Args:
      loss: scalar loss of a pytree.
      params: the point :math:`\\theta`.
      v: a pytree with the structure of ``params``.

    Returns:
      :math:`H v` with the structure of ``params``.

    Example:

    >>> import jax.numpy as jnp
    >>> loss = lambda th: th[0] ** 2 * th[1]                  # Hessian [[2 th1, 2 th0], [2 th0, 0]]
    >>> hvp(loss, jnp.array([1.0, 3.0]), jnp.array([1.0, 0.0])).tolist()
    [6.0, 2.0]
    """
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def hessian(loss: Loss, params: Params) -> jax.Array:
    """Dense Hessian of ``loss`` at ``params`` as a ``(d, d)`` matrix over the flattened pytree.

    The flattening order is that of :func:`jax.flatten_util.ravel_pytree`.

    Example:

    >>> import jax.numpy as jnp
    >>> hessian(lambda th: th[0] ** 2 * th[1], jnp.array([1.0, 3.0])).tolist()
    [[6.0, 2.0], [2.0, 0.0]]
    """
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: loss(unravel(x)))(flat)


def hessian_eigh(loss: Loss, params: Params) -> tuple[jax.Array, jax.Array]:
    """All eigenvalues (ascending) and eigenvectors (columns) of the dense Hessian.

    The Hessian is symmetrised, :math:`(H + H^\\top)/2`, before ``eigh`` to remove round-off asymmetry.

    Example:

    >>> import jax.numpy as jnp
    >>> mu, V = hessian_eigh(lambda th: 0.5 * (th[0] ** 2 + 4 * th[1] ** 2), jnp.zeros(2))
    >>> mu.tolist()
    [1.0, 4.0]
    """
    h = hessian(loss, params)
    return jnp.linalg.eigh(0.5 * (h + h.T))


class Eigenpairs(NamedTuple):
    """Top eigenpairs from :func:`top_eigenpairs`.

    Attributes:
      values: ``(k,)`` eigenvalues, largest first.
      vectors: ``(d, k)`` orthonormal eigenvectors over the flattened parameters.
      residuals: ``(k,)`` residual norms :math:`\\|Hv - \\mu v\\|`, the honest accuracy estimate.
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array


def top_eigenpairs(
    loss: Loss,
    params: Params,
    k: int = 1,
    *,
    num_iters: int = 40,
    key: jax.Array | None = None,
    v0: jax.Array | None = None,
) -> Eigenpairs:
    """Largest-algebraic eigenpairs of the Hessian by Lanczos with full re-orthogonalisation.

    Matrix-free: it uses ``num_iters`` Hessian-vector products (:func:`hvp`) and never forms
    the Hessian, so it scales to models whose Hessian does not fit in memory. Full
    re-orthogonalisation keeps the Krylov basis orthonormal in floating point (no ghost
    eigenvalues), at a cost of :math:`O(d\\,m^2)` for ``m = num_iters``.

    The Lanczos estimates of extreme eigenvalues converge first; ``residuals`` reports
    :math:`\\|Hv-\\mu v\\|` for each pair so that callers can check convergence. Pass ``v0`` (e.g. the
    previous top eigenvector along a trajectory) to warm-start.

    Args:
      loss: scalar loss of a pytree.
      params: the point at which the Hessian is taken.
      k: number of eigenpairs (``1 <= k <= num_iters``).
      num_iters: Krylov dimension ``m`` (capped at the number of parameters ``d``).
      key: PRNG key for the random start (default: ``PRNGKey(0)``); ignored when ``v0`` is given.
      v0: optional flat starting vector of length ``d``.

    Returns:
      :class:`Eigenpairs` with the ``k`` largest eigenvalues first.

    Raises:
      ValueError: when ``k`` or ``num_iters`` are not positive integers or ``k > num_iters``.

    Example:

    >>> import jax.numpy as jnp
    >>> loss = lambda th: 0.5 * jnp.sum(jnp.arange(1.0, 7.0) * th**2)     # eigenvalues 1..6
    >>> ep = top_eigenpairs(loss, jnp.zeros(6), 2, num_iters=6)
    >>> [round(float(m), 4) for m in ep.values]
    [6.0, 5.0]
    """
    k = check_positive_int("k", k)
    num_iters = check_positive_int("num_iters", num_iters)
    flat, unravel = ravel_pytree(params)
    d = flat.shape[0]
    m = min(num_iters, d)
    if k > m:
        raise ValueError(f"k must be <= min(num_iters, number of parameters) = {m}, got {k}")

    def matvec(v: jax.Array) -> jax.Array:
        return ravel_pytree(hvp(loss, params, unravel(v)))[0]

    key = jax.random.PRNGKey(0) if key is None else key
    if v0 is None:
        v0 = jax.random.normal(key, (d,), dtype=flat.dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    basis = jnp.zeros((m, d), flat.dtype).at[0].set(v0)
    alphas = jnp.zeros((m,), flat.dtype)
    betas = jnp.zeros((m,), flat.dtype)

    def orthogonalise(w, basis, i):
        # full re-orthogonalisation against the basis vectors 0..i (twice is enough)
        mask = (jnp.arange(m) <= i)[:, None]
        for _ in range(2):
            w = w - (mask * basis).T @ ((mask * basis) @ w)
        return w

    def body(i, carry):
        basis, alphas, betas = carry
        v = basis[i]
        w = matvec(v)
        alpha = jnp.vdot(w, v)
        w = orthogonalise(w, basis, i)
        beta = jnp.linalg.norm(w)
        # Breakdown (an invariant subspace was found): continue from a random vector orthogonal to
        # the basis, with a zero coupling, so that no spurious eigenvalue enters the tridiagonal matrix.
        broke = beta <= 1e-10 * (1.0 + jnp.abs(alpha))
        fresh = orthogonalise(jax.random.normal(jax.random.fold_in(key, i), (d,), flat.dtype), basis, i)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1.0, beta))
        beta = jnp.where(broke, 0.0, beta)
        basis = jnp.where(i + 1 < m, basis.at[jnp.minimum(i + 1, m - 1)].set(nxt), basis)
        return basis, alphas.at[i].set(alpha), betas.at[i].set(beta)

    basis, alphas, betas = jax.lax.fori_loop(0, m, body, (basis, alphas, betas))
    tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    theta, s = jnp.linalg.eigh(tri)
    order = jnp.argsort(theta)[::-1][:k]
    values = theta[order]
    vectors = basis.T @ s[:, order]
    vectors = vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)
    hv = jax.vmap(matvec, in_axes=1, out_axes=1)(vectors)
    residuals = jnp.linalg.norm(hv - vectors * values[None, :], axis=0)
    return Eigenpairs(values, vectors, residuals)


def sharpness(loss: Loss, params: Params, *, dense: bool | None = None, num_iters: int = 40) -> jax.Array:
    """Largest Hessian eigenvalue :math:`\\lambda_{\\max}(\\nabla^2 L)`, the sharpness.

    Args:
      loss: scalar loss.
      params: the point.
      dense: use the dense ``eigh`` (exact); default: dense when there are at most 500 parameters,
        else Lanczos (:func:`top_eigenpairs`).
      num_iters: Lanczos iterations when not dense.

    Example:

    >>> import jax.numpy as jnp
    >>> round(float(sharpness(lambda th: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * th**2), jnp.zeros(2))), 6)
    3.0
    """
    d = ravel_pytree(params)[0].shape[0]
    if dense is None:
        dense = d <= 500
    if dense:
        return hessian_eigh(loss, params)[0][-1]
    return top_eigenpairs(loss, params, 1, num_iters=num_iters).values[0]


def decayed_spectrum(A: jax.Array, lam) -> tuple[jax.Array, jax.Array]:
    r"""Eigenvalues (ascending) and eigenvectors of :math:`J = (A + A^\top)/2 + \lambda I`.

    Example:

    >>> import jax.numpy as jnp
    >>> decayed_spectrum(jnp.diag(jnp.array([3.0, 1.0])), 0.5)[0].tolist()
    [1.5, 3.5]
    """
    J = 0.5 * (A + A.T) + lam * jnp.eye(A.shape[0], dtype=A.dtype)
    return jnp.linalg.eigh(J)


def hvp_fd(loss: Loss, params: Params, v: Params, *, h: float) -> Params:
    r"""Finite-difference Hessian-vector product, :math:`Hv \approx (\nabla L(\theta + h v)
    - \nabla L(\theta))/h`.

    The estimator Rosca et al. (2023, Section 6) take from Geiping et al. (2021) for the drift
    term :math:`Hg` (with :math:`v = g`); it costs one extra gradient and has error
    :math:`O(h\|v\|^2)`. The released code uses :math:`h = 0.01/\|g\|` (the paper's
    :math:`\epsilon`; ``h`` here, so as not to clash with an optimizer's :math:`\varepsilon`).

    >>> import jax.numpy as jnp
    >>> loss = lambda th: jnp.sum(th**3) / 6          # Hessian diag(theta)
    >>> hv = hvp_fd(loss, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]), h=1e-4)
    >>> [round(float(x), 3) for x in hv]
    [1.0, 2.0]
    """
    grad = jax.grad(loss)
    shifted = _tmap(lambda p, w: p + h * w, params, v)
    return _tmap(lambda a, b: (a - b) / h, grad(shifted), grad(params))


class SharpnessTrace(NamedTuple):
    """Top Hessian eigenpair along a trajectory, from :func:`track_sharpness`.

    Attributes:
      values: ``(n,)`` sharpness :math:`\\mu_0(\\theta_k)` (largest eigenvalue).
      vectors: ``(n, d)`` unit top eigenvectors over the flattened parameters, with signs chosen
        continuous along the path (each has a non-negative overlap with the previous one).
      residuals: ``(n,)`` :math:`\\|Hu - \\mu_0 u\\|`, the accuracy of each pair.
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array


def track_sharpness(loss: Loss, path: Params, *, lam=0.0, num_iters: int = 10,
                    v0: jax.Array | None = None, key: jax.Array | None = None) -> SharpnessTrace:
    r"""Sharpness :math:`\mu_0 = \lambda_{\max}(\nabla^2 L_\lambda)` at every iterate of a path.

    One ``lax.scan`` over the iterates; at each it runs ``num_iters`` Lanczos steps
    (:func:`dyncore.curvature.top_eigenpairs`, matrix-free, ``num_iters + 1`` Hessian-vector products)
    **warm-started** from the previous iterate's top eigenvector. Consecutive GD iterates have
    nearby Hessians, so a few iterations suffice where a cold start needs dozens. Lanczos returns
    the largest *algebraic* eigenvalue (power iteration would return the largest in modulus, which
    can be a negative one). Check ``residuals``.

    Args:
      loss: scalar loss.
      path: iterates stacked on a leading axis (e.g. ``dc.run(...).params``).
      lam: weight decay (adds :math:`\lambda` to every eigenvalue).
      num_iters: Lanczos iterations per iterate.
      v0: optional flat start vector for the first iterate. Without it the first iterate gets a
        cold start from a random vector: Lanczos is restarted there until at least 40 iterations
        have been spent (inside the same scan, so nothing extra is compiled).
      key: PRNG key of that random vector.

    Returns:
      A :class:`SharpnessTrace`.

    Raises:
      ValueError: if ``lam < 0`` or ``num_iters`` is not a positive integer.

    Example:

    >>> import jax.numpy as jnp
    >>> loss = lambda th: 0.5 * th[0] ** 2 + th[1] ** 4 / 12     # sharpness max(1, th1^2)
    >>> path = jnp.array([[0.0, 2.0], [0.0, 1.5], [0.0, 1.0]])
    >>> [round(float(m), 4) for m in track_sharpness(loss, path).values]
    [4.0, 2.25, 1.0]
    """
    check_hparams(lam=lam)
    num_iters = check_positive_int("num_iters", num_iters)
    loss_lam = with_decay(loss, lam)
    first = _tmap(lambda x: x[0], path)
    flat0 = ravel_pytree(first)[0]
    warmup = 0
    if v0 is None:  # cold start: restart Lanczos `warmup` times at the first iterate
        key = jax.random.PRNGKey(0) if key is None else key
        v0 = jax.random.normal(key, flat0.shape, flat0.dtype)
        warmup = max(1, -(-40 // num_iters))  # at least 40 iterations in all
        path = _tmap(lambda x: jnp.concatenate([jnp.repeat(x[:1], warmup, axis=0), x]), path)
    v0 = jnp.asarray(v0, flat0.dtype)

    def step(v, params):
        ep = top_eigenpairs(loss_lam, params, 1, num_iters=num_iters, v0=v)
        u = ep.vectors[:, 0]
        u = jnp.where(jnp.vdot(u, v) < 0, -u, u)
        return u, (ep.values[0], u, ep.residuals[0])

    _, (values, vectors, residuals) = jax.lax.scan(step, v0, path)
    return SharpnessTrace(values[warmup:], vectors[warmup:], residuals[warmup:])

