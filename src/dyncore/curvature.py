"""Curvature of a loss: Hessian-vector products, dense Hessians and their spectra.

All functions take a scalar loss ``loss(params)`` of a parameter pytree. Dense routines flatten the
pytree with :func:`jax.flatten_util.ravel_pytree` (fine for the book's toy models, up to a few
thousand parameters); :func:`top_eigenpairs` is matrix-free and needs only Hessian-vector products.
"""

from __future__ import annotations

import math
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
    "lanczos",
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
      residuals: ``(k,)`` residual norms :math:`\\|Hv - \\mu v\\|`, the honest accuracy estimate
        (computed with ``k`` more Hessian-vector products, or Lanczos' own estimate with
        ``exact_residuals=False``).
      num_matvecs: the number of Hessian-vector products spent (an int array: with ``tol`` it
        depends on the data).
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array
    num_matvecs: jax.Array


_BLOCK = 16  # rows of the Krylov basis re-orthogonalised against at once


def _ritz_static(alphas: jax.Array, betas: jax.Array, i: jax.Array, k: int, size: int):
    # the leading size x size corner, rows beyond i decoupled and pushed below the spectrum
    alphas, betas = alphas[:size], betas[:size]
    idx = jnp.arange(size)
    live = idx <= i
    spread = 2 * jnp.max(jnp.where(live, jnp.abs(betas), 0.0))
    low = jnp.min(jnp.where(live, alphas, jnp.inf)) - spread
    diag = jnp.where(live, alphas, low - 0.5 * (1.0 + jnp.abs(low)))
    off = jnp.where(idx[:-1] < i, betas[:-1], 0.0)
    theta, s = jnp.linalg.eigh(jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1))
    order = jnp.argsort(theta)[::-1][:k]
    s = s[:, order]
    est = jnp.abs(betas[jnp.minimum(i, size - 1)] * s[jnp.minimum(i, size - 1)])
    return theta[order], s, est


def _ritz(alphas: jax.Array, betas: jax.Array, i: jax.Array, k: int):
    """The ``k`` largest Ritz pairs of the leading ``(i+1) x (i+1)`` block of the Lanczos matrix.

    The tridiagonal matrix has a static size ``m``. It is solved in the smallest corner of size
    ``16 * 2**(j/2)`` (or ``m``) that holds the block, picked by ``lax.switch``, so a test at
    iteration ``i`` costs :math:`O(i^3)`, not :math:`O(m^3)`; rows of the corner beyond ``i`` are
    decoupled and their diagonal is set below the block's Gershgorin bound, so that the
    ``k <= i + 1`` largest eigenvalues are the block's. Returns the values, the ``(m, k)``
    eigenvectors and Lanczos' residual estimates :math:`|\\beta_i s_{ij}|` (the exact residual
    norms in exact arithmetic).
    """
    m = alphas.shape[0]
    sizes = sorted({min(m, int(16 * 2 ** (j / 2))) for j in range(2 * max(1, math.ceil(math.log2(max(m, 16) / 16))) + 1)})
    sizes = [sz for sz in sizes if sz >= k]

    def branch(size):
        def solve(alphas, betas, i):
            values, s, est = _ritz_static(alphas, betas, i, k, size)
            return values, jnp.zeros((m, k), s.dtype).at[:size].set(s), est

        return solve

    which = jnp.searchsorted(jnp.asarray(sizes), i + 1)  # the first corner with size >= i + 1
    return jax.lax.switch(jnp.minimum(which, len(sizes) - 1), [branch(sz) for sz in sizes], alphas, betas, i)


def _check_lanczos_args(k, num_iters, tol, d):
    k = check_positive_int("k", k)
    num_iters = check_positive_int("num_iters", num_iters)
    if tol is not None and not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1) or None, got {tol!r}")
    m = min(num_iters, d)
    if k > m:
        raise ValueError(f"k must be <= min(num_iters, number of parameters) = {m}, got {k}")
    return k, m


def lanczos(
    matvec: Callable[[jax.Array], jax.Array],
    v0: jax.Array,
    k: int = 1,
    *,
    num_iters: int = 40,
    tol: float | None = None,
    key: jax.Array | None = None,
) -> Eigenpairs:
    """The ``k`` largest eigenpairs of a symmetric operator on flat vectors, by Lanczos.

    The engine of :func:`top_eigenpairs`, for any symmetric ``matvec`` (a Gauss-Newton or Fisher
    product, a Hessian of your own): one product per iteration, full re-orthogonalisation
    against the basis built so far (in blocks, so iteration ``i`` costs :math:`O(d\\,i)`; a
    second pass only when the first removed much, "twice is enough"), and a random restart
    orthogonal to the basis if the Krylov space becomes invariant. With ``tol`` it stops once every
    Ritz pair has :math:`|\\beta_i s_{ij}| \\le` ``tol`` :math:`|\\mu_j|` (Lanczos' own residual
    estimate, free; tested at iterations spaced by a sixteenth of the iteration count).

    The loops have data-dependent lengths, so the result can be ``jit``-ed and ``vmap``-ped but
    not differentiated in reverse mode; for the gradient of an eigenvalue use
    :math:`\\partial\\mu = u^\\top (\\partial H) u` with the returned vector held fixed.

    Args:
      matvec: ``v -> A v`` on vectors of shape ``(d,)``.
      v0: start vector ``(d,)`` (normalised here).
      k: number of eigenpairs.
      num_iters: the most iterations (capped at ``d``).
      tol: relative residual at which to stop, or ``None`` to run all iterations.
      key: PRNG key of a restart after a breakdown (default ``PRNGKey(0)``).

    Returns:
      :class:`Eigenpairs`, ``residuals`` being the estimates and ``num_matvecs`` the iterations.

    Example:

    >>> import jax.numpy as jnp
    >>> A = jnp.diag(jnp.arange(1.0, 101.0))
    >>> ep = lanczos(lambda v: A @ v, jnp.ones(100), 2, num_iters=100, tol=1e-6)
    >>> [round(float(x), 4) for x in ep.values], int(ep.num_matvecs) < 100
    ([100.0, 99.0], True)
    """
    v0 = jnp.asarray(v0)
    d = v0.shape[0]
    k, m = _check_lanczos_args(k, num_iters, tol, d)
    dt = v0.dtype
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = v0 / jnp.linalg.norm(v0)

    n_blocks = -(-m // _BLOCK)
    basis = jnp.zeros((n_blocks, _BLOCK, d), dt).at[0, 0].set(v0)

    def orthogonalise(w, basis, i):
        # one classical Gram-Schmidt pass against the basis vectors 0..i, block by block
        def one_block(b, w):
            rows = jax.lax.dynamic_index_in_dim(basis, b, keepdims=False)
            live = b * _BLOCK + jnp.arange(_BLOCK) <= i
            return w - rows.T @ jnp.where(live, rows @ w, 0.0)

        return jax.lax.fori_loop(0, i // _BLOCK + 1, one_block, w)

    def reorthogonalise(w, basis, i):
        # a second pass only when the first removed much of w ("twice is enough", Kahan-Parlett)
        before = jnp.linalg.norm(w)
        w = orthogonalise(w, basis, i)
        return jax.lax.cond(jnp.linalg.norm(w) < 0.7 * before, orthogonalise, lambda w, *_: w, w, basis, i)

    def restart(basis, i):
        # breakdown (an invariant subspace was found): a random vector orthogonal to the basis
        fresh = jax.random.normal(jax.random.fold_in(key, i), (d,), dt)
        fresh = orthogonalise(orthogonalise(fresh, basis, i), basis, i)
        return fresh / jnp.linalg.norm(fresh)

    def body(carry):
        i, basis, alphas, betas, _, next_check = carry
        v = basis[i // _BLOCK, i % _BLOCK]
        w = matvec(v)
        alpha = jnp.vdot(w, v)
        # the three-term recurrence, then full re-orthogonalisation against round-off
        prev = basis[jnp.maximum(i - 1, 0) // _BLOCK, jnp.maximum(i - 1, 0) % _BLOCK]
        w = w - alpha * v - jnp.where(i > 0, betas[jnp.maximum(i - 1, 0)], 0.0) * prev
        w = reorthogonalise(w, basis, i)
        beta = jnp.linalg.norm(w)
        # continue after a breakdown with a zero coupling, so that no spurious eigenvalue enters
        # the tridiagonal matrix
        broke = beta <= 1e-10 * (1.0 + jnp.abs(alpha))
        nxt = jax.lax.cond(broke, lambda w, b: restart(basis, i), lambda w, b: w / b, w, beta)
        beta = jnp.where(broke, 0.0, beta)
        j = jnp.minimum(i + 1, m - 1)  # after the last iteration, row m - 1 keeps its own vector
        basis = basis.at[j // _BLOCK, j % _BLOCK].set(jnp.where(i + 1 < m, nxt, v))
        alphas, betas = alphas.at[i].set(alpha), betas.at[i].set(beta)
        done = jnp.asarray(False)
        if tol is not None:
            check = (i + 1 >= k) & (i >= next_check)

            def converged(_):
                values, _, est = _ritz(alphas, betas, i, k)
                return jnp.all(est <= tol * jnp.abs(values))

            done = jax.lax.cond(check, converged, lambda _: jnp.asarray(False), None)
            next_check = jnp.where(check, i + jnp.maximum(1, (i + 1) // 16), next_check)
        return i + 1, basis, alphas, betas, done, next_check

    def cond(carry):
        i, *_, done, _ = carry
        return (i < m) & ~done

    zeros = jnp.zeros((m,), dt)
    carry = (jnp.asarray(0), basis, zeros, zeros, jnp.asarray(False), jnp.asarray(k - 1))
    n, basis, alphas, betas, _, _ = jax.lax.while_loop(cond, body, carry)
    values, s, estimates = _ritz(alphas, betas, n - 1, k)
    # Ritz vectors from the n basis vectors built (not the whole budget), block by block
    s = jnp.pad(s, ((0, n_blocks * _BLOCK - m), (0, 0))).reshape(n_blocks, _BLOCK, k)

    def add_block(b, acc):
        rows = jax.lax.dynamic_index_in_dim(basis, b, keepdims=False)
        return acc + rows.T @ jax.lax.dynamic_index_in_dim(s, b, keepdims=False)

    vectors = jax.lax.fori_loop(0, (n - 1) // _BLOCK + 1, add_block, jnp.zeros((d, k), dt))
    vectors = vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)
    return Eigenpairs(values, vectors, estimates, n)


def top_eigenpairs(
    loss: Loss,
    params: Params,
    k: int = 1,
    *,
    num_iters: int = 40,
    tol: float | None = None,
    key: jax.Array | None = None,
    v0: jax.Array | None = None,
    exact_residuals: bool = True,
) -> Eigenpairs:
    """Largest-algebraic eigenpairs of the Hessian by Lanczos with full re-orthogonalisation.

    Matrix-free (:func:`lanczos` on Hessian-vector products): one product per iteration, at most
    ``num_iters`` of them, and the Hessian is never formed, so it scales to models whose Hessian
    does not fit in memory. The gradient is linearised once (forward-over-reverse, compiled with
    the call), so every product reuses its forward pass. Full re-orthogonalisation keeps the
    Krylov basis orthonormal in floating point (no ghost eigenvalues).

    With ``tol``, Lanczos stops as soon as every one of the ``k`` Ritz pairs has a relative
    residual :math:`\\|Hv-\\mu v\\|/|\\mu| \\le` ``tol`` by Lanczos' own estimate
    :math:`|\\beta_i s_{ij}|`, which costs no product (the test runs at iterations ``k, k+1, ...``
    spaced by a sixteenth of the iteration count, so it may overshoot by that much); ``num_iters``
    is then the budget. Without ``tol`` it runs all ``num_iters`` iterations. Extreme eigenvalues
    converge first. Pass ``v0`` to warm-start (e.g. the sum of the previous top vectors along a
    trajectory).

    Args:
      loss: scalar loss of a pytree.
      params: the point at which the Hessian is taken.
      k: number of eigenpairs (``1 <= k <= num_iters``).
      num_iters: the most Lanczos iterations (the Krylov dimension, capped at the number of
        parameters ``d``).
      tol: relative residual at which to stop early (``0 < tol < 1``), or ``None``.
      key: PRNG key for the random start (default: ``PRNGKey(0)``); ignored when ``v0`` is given.
      v0: optional flat starting vector of length ``d``.
      exact_residuals: compute ``residuals`` with ``k`` more Hessian-vector products (default),
        or report Lanczos' estimates, which are free.

    Returns:
      :class:`Eigenpairs` with the ``k`` largest eigenvalues first.

    Raises:
      ValueError: when ``k`` or ``num_iters`` are not positive integers, ``k > num_iters``, or
        ``tol`` is not in ``(0, 1)``.

    Example:

    >>> import jax.numpy as jnp
    >>> loss = lambda th: 0.5 * jnp.sum(jnp.arange(1.0, 7.0) * th**2)     # eigenvalues 1..6
    >>> ep = top_eigenpairs(loss, jnp.zeros(6), 2, num_iters=6)
    >>> [round(float(m), 4) for m in ep.values], int(ep.num_matvecs)      # 6 iterations + 2 residuals
    ([6.0, 5.0], 8)
    >>> loss = lambda th: 0.5 * jnp.sum(jnp.linspace(0.0, 1.0, 1000) ** 8 * th**2)  # a gap at the top
    >>> ep = top_eigenpairs(loss, jnp.zeros(1000), 1, num_iters=100, tol=1e-4, exact_residuals=False)
    >>> int(ep.num_matvecs) < 50, bool(ep.residuals[0] <= 1e-4 * ep.values[0])
    (True, True)
    """
    flat, unravel = ravel_pytree(params)
    _check_lanczos_args(k, num_iters, tol, flat.shape[0])
    # forward-over-reverse, linearised once: the products reuse the forward pass of the gradient
    _, matvec = jax.linearize(lambda x: ravel_pytree(jax.grad(loss)(unravel(x)))[0], flat)
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, flat.shape, flat.dtype) if v0 is None else jnp.asarray(v0, flat.dtype)
    ep = lanczos(matvec, v0, k, num_iters=num_iters, tol=tol, key=key)
    if not exact_residuals:
        return ep
    hv = jax.vmap(matvec, in_axes=1, out_axes=1)(ep.vectors)
    residuals = jnp.linalg.norm(hv - ep.vectors * ep.values[None, :], axis=0)
    return ep._replace(residuals=residuals, num_matvecs=ep.num_matvecs + k)


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

