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

from .validation import check_positive_int

__all__ = ["hvp", "hessian", "hessian_eigh", "Eigenpairs", "top_eigenpairs", "sharpness"]

Params = Any
Loss = Callable[[Params], jax.Array]


def hvp(loss: Loss, params: Params, v: Params) -> Params:
    """Hessian-vector product :math:`\\nabla^2 L(\\theta)\\,v`, forward-over-reverse.

    Costs about two gradient evaluations and never forms the Hessian.

    Args:
      loss: scalar loss of a pytree.
      params: the point :math:`\\theta`.
      v: a pytree with the structure of ``params``.

    Returns:
      :math:`H v` with the structure of ``params``.
    """
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def hessian(loss: Loss, params: Params) -> jax.Array:
    """Dense Hessian of ``loss`` at ``params`` as a ``(d, d)`` matrix over the flattened pytree.

    The flattening order is that of :func:`jax.flatten_util.ravel_pytree`.
    """
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: loss(unravel(x)))(flat)


def hessian_eigh(loss: Loss, params: Params) -> tuple[jax.Array, jax.Array]:
    """All eigenvalues (ascending) and eigenvectors (columns) of the dense Hessian.

    The Hessian is symmetrised, :math:`(H + H^\\top)/2`, before ``eigh`` to remove round-off asymmetry.
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
    """
    d = ravel_pytree(params)[0].shape[0]
    if dense is None:
        dense = d <= 500
    if dense:
        return hessian_eigh(loss, params)[0][-1]
    return top_eigenpairs(loss, params, 1, num_iters=num_iters).values[0]
