r"""Fast mixing of SGD with normalization and weight decay (Li, Wang & Yu 2022).

The theory layer of the chapter on Li, Wang & Yu (2022). For a scale-invariant loss,
:math:`L(cx) = L(x)` for :math:`c > 0`, SGD with learning rate :math:`\eta` and weight decay
:math:`\lambda` (the paper's Eq. (1), PyTorch's ``SGD(weight_decay=lam)``)

.. math:: x_{k+1} = (1-\eta\lambda)\,x_k - \eta\,\big(\nabla L(x_k) + \xi_k\big)

has three time scales: descent to the manifold :math:`\Gamma` of minimizers, the equilibration of
the norm in :math:`\ln(2\lambda/\eta)/(4\eta\lambda)` steps, and diffusion of the *direction*
:math:`\bar x = x/\|x\|` along :math:`\Gamma` at the intrinsic learning rate :math:`\eta\lambda`, which
mixes in :math:`O(1/(\eta\lambda))` steps. This module provides

* **models**: stochastic gradients with the paper's tangent noise (Eq. (18), :func:`noisy_grad`),
  the analytic gradient of the great-circle toy (:func:`great_circle_grad`), anisotropic tangent
  noise with a known non-uniform equilibrium (:func:`anisotropic_noise_grad`) and a loss whose
  curvature varies along the manifold (:func:`modulated_circle`);
* **the method**: many independent SGD+WD chains (optionally with momentum :math:`\beta`, or
  AdamW with :math:`\beta, \rho`), ``vmap``-ed over split keys and recorded every few steps
  (:func:`sgd_chains`);
* **the measurements**: angle variance, circular order parameters, diffusion rates, first-passage
  (mixing) times and the mean :math:`\|x\|^4` over chains;
* **the theory**: the stationary laws of the toys. The norm law (the paper's Eq. (10)), the clock
  :math:`\tau_{\eta,\lambda}` of Eq. (12) and its inverse are results on scale-invariant layers and
  live in :mod:`dyncore.scale_invariance` (:func:`~dyncore.scale_invariance.sde_norm4`,
  :func:`~dyncore.scale_invariance.clock`, :func:`~dyncore.scale_invariance.clock_inverse`).

Conventions: steps :math:`k` (not time :math:`k\eta`) are the unit of every rate. :math:`C` (``c2``) is
:math:`\operatorname{tr}\Sigma` on the unit sphere (the paper's :math:`\hat\sigma^2` of Eq. (10)); for
the tangent noise of Eq. (18) in :math:`\mathbb R^D`, :math:`C = (D-1)\hat\sigma^2`. Momentum follows
PyTorch (coupled decay, :math:`m \leftarrow \beta m + g + \lambda x`, :math:`x \leftarrow x - \eta m`),
i.e. :func:`dyncore.optimizers.heavy_ball`; the paper has no momentum and no AdamW.

>>> round(float(stationary_cos2(0.6)), 6)      # (sqrt(1 - 0.36) - 1) / 0.6
-0.333333
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from . import prng
from .optimizers import adamw, heavy_ball
from .runner import Observer, run_chains
from .trees import as_float, flat
from .problems import Problem
from .validation import check_hparams, check_positive, check_positive_int, is_concrete

__all__ = [
    "noisy_grad",
    "great_circle_grad",
    "anisotropic_noise_grad",
    "rotated_grad",
    "modulated_circle",
    "ChainRecord",
    "sgd_chains",
    "Estimate",
    "chain_mean",
    "angle_variance",
    "quadratic_variation",
    "circular_order",
    "diffusion_rate",
    "first_passage",
    "stationary_cos2",
]

Params = Any
GradFn = Callable[[Params, jax.Array], Params]


def _check_kappa(kappa) -> None:
    if is_concrete(kappa):
        arr = np.asarray(kappa, dtype=float)
        if not np.all(np.isfinite(arr) & (arr >= 0) & (arr < 1)):
            raise ValueError(f"kappa must be in [0, 1), got {float(np.ravel(arr)[0]):g}")


# ------------------------------------------------------------------------------------ models
def _normal(key: jax.Array, shape: tuple[int], dtype) -> jax.Array:
    """Standard normals drawn in float32 and cast: the noise needs no more precision, and float64
    draws cost 2.4x more. The numbers are ``jax.random.normal``'s, with its hash unrolled
    (``dyncore.prng``): the random numbers dominate the cost of a chain step."""
    return prng.normal(key, shape[0], dtype)


def noisy_grad(grad: Callable[[Params], Params], sigma, *, tangent: bool = True) -> GradFn:
    r"""A stochastic gradient: the exact gradient plus Gaussian noise (the paper's Eq. (18)).

    With ``tangent=True`` (default) the noise is the gradient of the random loss
    :math:`\langle \bar x, \varepsilon\rangle` with :math:`\varepsilon \sim N(0, \hat\sigma^2 I_D)`:

    .. math:: g(x) = \nabla L(x) + \frac{1}{\|x\|}\Big(I_D - \bar x\bar x^\top\Big)\varepsilon,
              \qquad \Sigma(x) = \frac{\hat\sigma^2}{\|x\|^2}\big(I_D - \bar x\bar x^\top\big),

    orthogonal to :math:`x` and :math:`(-1)`-homogeneous, so scale invariance is kept and
    :math:`\operatorname{tr}\Sigma = C/\|x\|^2` with :math:`C = (D-1)\hat\sigma^2`. With
    ``tangent=False`` it is plain isotropic noise :math:`\nabla L(x) + \varepsilon`, for losses that are
    not scale invariant (the unnormalized control of the chapter). A pytree is treated as one
    vector of dimension :math:`D` (all its entries). The normals are drawn in float32 (then cast):
    this halves the cost of a chain step and changes no statistic.

    Args:
      grad: the exact gradient ``grad(x)`` (e.g. ``jax.grad(loss)`` or :func:`great_circle_grad`).
      sigma: noise level :math:`\hat\sigma > 0` (may be traced).
      tangent: project and scale the noise as in Eq. (18).

    Returns:
      ``grad_fn(x, key)`` for :func:`sgd_chains` or :func:`dyncore.runner.run`.

    Raises:
      ValueError: if ``sigma <= 0``.
    """
    check_positive("sigma", sigma)

    def grad_fn(x, key):
        flat, unravel = ravel_pytree(x)
        eps = sigma * _normal(key, flat.shape, flat.dtype)
        if tangent:
            r = jnp.linalg.norm(flat)
            u = flat / r
            eps = (eps - u * (u @ eps)) / r
        return jax.tree_util.tree_map(jnp.add, grad(x), unravel(eps))

    return grad_fn


def great_circle_grad(x: jax.Array) -> jax.Array:
    r"""Analytic gradient of the great-circle loss :func:`dyncore.problems.great_circle`.

    For :math:`L(x) = \tfrac12\bar x^\top P\bar x` with :math:`P = \mathrm{diag}(0, 0, 1, \ldots, 1)`,

    .. math:: \nabla L(x) = \frac{P\bar x - \bar x\,(\bar x^\top P\bar x)}{\|x\|} .

    It equals ``jax.grad`` of the loss (to round-off) at a third of the cost, and it is exactly
    :math:`(-1)`-homogeneous in floating point for power-of-two rescalings.
    """
    r = jnp.linalg.norm(x)
    u = x / r
    pu = u.at[:2].set(0.0)
    return (pu - u * jnp.sum(u * pu)) / r


# Up to this many columns a matrix-vector product is written as a sum of scaled columns:
# elementwise work that XLA fuses into the chain's step. A matrix product in a vmapped chain goes to a
# library kernel on the CPU instead, and a loop that calls one is never compiled whole
# (``dyncore.xla_setup``); measured for 2 x 40 chains of 1200 steps in 10-D: 36 against 15 ms.
_FEW_COLUMNS = 16


def _matvec(m: jax.Array, v: jax.Array) -> jax.Array:
    if m.shape[1] > _FEW_COLUMNS:
        return m @ v
    return sum(m[:, j] * v[j] for j in range(m.shape[1]))


def rotated_grad(grad_fn: GradFn, q) -> GradFn:
    r"""The stochastic gradient of the same problem in a rotated basis: :math:`x \mapsto Q^\top g(Qx, \kappa)`.

    For an orthogonal :math:`Q`, if ``grad_fn`` is the gradient of :math:`L` (plus noise), the result is
    the gradient of :math:`L(Qx)` (plus the rotated noise). Rotation-equivariant optimizers (SGD,
    heavy ball) give the rotated trajectory; coordinate-wise ones (RMSProp, AdamW) do not, which is
    what rotating a toy problem out of its axes tests. For up to 16 coordinates the two products
    are sums of scaled columns, which keeps a chain's step loop one compiled kernel on a CPU;
    the result equals ``q.T @ grad_fn(q @ x, key)`` to rounding.

    Args:
      grad_fn: stochastic gradient ``grad_fn(x, key)`` on flat vectors (:func:`noisy_grad`, ...).
      q: a ``(D, D)`` orthogonal matrix (orthogonality is the caller's to ensure; it is not checked).

    Returns:
      ``grad_fn(x, key)`` for :func:`sgd_chains`.

    Raises:
      ValueError: if ``q`` is not a square matrix.
    """
    q = jnp.asarray(q)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"q must be a square (D, D) matrix, got shape {q.shape}")
    qt = q.T

    def rotated(x, key):
        return _matvec(qt, grad_fn(_matvec(q, x), key))

    return rotated


def _plane_frame(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """cos 2θ for the angle θ of (x₁, x₂), the unit tangent e_θ and the normal n = x̄ × e_θ (D = 3).

    cos 2θ = (x₁² − x₂²)/(x₁² + x₂²) needs no arctan and cosine (a chain step's transcendentals
    cost more than its arithmetic on a CPU).
    """
    u = x / jnp.linalg.norm(x)
    rho2 = x[0] ** 2 + x[1] ** 2
    e_theta = jnp.stack([-x[1], x[0], jnp.zeros_like(x[0])]) / jnp.sqrt(rho2)
    return (x[0] ** 2 - x[1] ** 2) / rho2, e_theta, jnp.cross(u, e_theta)


def anisotropic_noise_grad(sigma, kappa) -> GradFn:
    r"""Great-circle gradient in :math:`\mathbb R^3` with anisotropic tangent noise (a known, non-uniform equilibrium).

    With :math:`\theta = \operatorname{atan2}(x_2, x_1)`, :math:`e_\theta` the unit vector along the circle
    and :math:`n = \bar x \times e_\theta` the normal direction inside the sphere,

    .. math:: g(x) = \nabla L(x) + \frac{\hat\sigma}{\|x\|}\big(a(\theta)\,\zeta_1 e_\theta + c(\theta)\,\zeta_2 n\big),
              \quad a^2 = 1 + \kappa\cos 2\theta,\ c^2 = 1 - \kappa\cos 2\theta,\ \zeta \sim N(0, I_2).

    The trace on the unit sphere is the constant :math:`C = 2\hat\sigma^2`, so the norm obeys the same
    law as with isotropic noise; the paper's controllability assumption (Assm. 5.2) holds for
    :math:`\kappa < 1`. The limiting diffusion of the angle is driftless with diffusion
    :math:`\propto a(\theta)^2`, so its stationary law is :math:`\pi(\theta) \propto 1/(1+\kappa\cos 2\theta)`
    (derived; :func:`stationary_cos2` with ``power=1``).

    Args:
      sigma: noise level :math:`\hat\sigma > 0`.
      kappa: anisotropy :math:`0 \le \kappa < 1`.

    Returns:
      ``grad_fn(x, key)`` for 3-vectors.

    Raises:
      ValueError: if ``sigma <= 0`` or ``kappa`` is not in ``[0, 1)``.
    """
    check_positive("sigma", sigma)
    _check_kappa(kappa)

    def grad_fn(x, key):
        if x.shape != (3,):
            raise ValueError(f"anisotropic_noise_grad needs x of shape (3,), got {x.shape}")
        cos2, e_theta, n = _plane_frame(x)
        zeta = _normal(key, (2,), x.dtype)
        noise = (
            jnp.sqrt(1 + kappa * cos2) * zeta[0] * e_theta
            + jnp.sqrt(1 - kappa * cos2) * zeta[1] * n
        )
        return great_circle_grad(x) + sigma * noise / jnp.linalg.norm(x)

    return grad_fn


def modulated_circle(kappa, dim: int = 3, theta0: ArrayLike | None = None) -> Problem:
    r"""Great-circle loss whose curvature varies along the circle of minimizers.

    .. math:: L(x) = \tfrac12\,h(\theta)\sum_{j \ge 3}\bar x_j^2, \qquad h(\theta) = 1 + \kappa\cos 2\theta,
              \quad \theta = \operatorname{atan2}(x_2, x_1) .

    Scale invariant, with the same minimizers as :func:`dyncore.problems.great_circle` (the
    :math:`(e_1, e_2)` plane), but the Hessian normal to the manifold on the unit sphere is
    :math:`h(\theta)I`. Under isotropic tangent noise the curvature drift
    :math:`\tfrac12\partial^2\Phi[\Sigma]` of the limiting diffusion favours flat regions. Each of the
    :math:`D - 2` normal directions adds a drift :math:`-\tfrac{\hat\sigma^2}{4}(\ln h)'`, so the derived
    stationary law is :math:`\pi(\theta) \propto h(\theta)^{-(D-2)/2}` (:func:`stationary_cos2` with
    ``power=(dim - 2) / 2``): :math:`h^{-1/2}` for :math:`D = 3`, the case of chapter 6.

    Args:
      kappa: modulation :math:`0 \le \kappa < 1` (a Python float: it is a model constant).
      dim: :math:`D \ge 3`.
      theta0: starting point (default :math:`(1, 0, \ldots, 0)`).

    Raises:
      ValueError: if ``kappa`` is not in ``[0, 1)`` or ``dim < 3``.
    """
    _check_kappa(kappa)
    dim = check_positive_int("dim", dim)
    if dim < 3:
        raise ValueError(f"dim must be >= 3, got {dim}")
    if theta0 is None:
        theta0 = jnp.zeros(dim).at[0].set(1.0)
    theta0 = as_float(theta0)

    def loss(x):
        r2 = jnp.sum(x**2)
        cos2 = (x[0] ** 2 - x[1] ** 2) / (x[0] ** 2 + x[1] ** 2)
        return 0.5 * (1 + kappa * cos2) * jnp.sum(x[2:] ** 2) / r2

    label = f"{float(kappa):g}" if is_concrete(kappa) else "traced"
    return Problem(f"modulated circle (κ={label}, D={dim})", loss, theta0)


# ------------------------------------------------------------------------------------ chains
class ChainRecord(NamedTuple):
    r"""What :func:`sgd_chains` records, every ``every`` steps, for each chain.

    All arrays have the chain axis first: ``(n_chains, R + 1, ...)`` with ``R = n_steps // every``.

    Attributes:
      steps: ``(R + 1,)`` recorded step indices :math:`0, e, 2e, \ldots, n_{\rm steps}`.
      x: ``(n_chains, R + 1, P)`` the observed part of the parameters, flattened.
      theta: ``(n_chains, R + 1)`` the *unwrapped* angle of :math:`(x_1, x_2)` (the first two entries
        of the observed part), accumulated step by step from :math:`\operatorname{atan2}` increments,
        starting at :math:`\Theta_0 = \operatorname{atan2}(x_2, x_1)`, so :math:`\Theta_k - \Theta_0` counts
        full turns. For the great circle it is the position
        on the manifold, a function-space observable.
      delta: ``(n_chains, R + 1)`` the angular update of the step that *ended* at each recorded step,
        :math:`\Delta_k = \angle(x_{k-1}, x_k)` (0 at :math:`k = 0`), from the chord
        :math:`2\arcsin(\|\bar x_k - \bar x_{k-1}\|/2)`, accurate for small angles.
      diverged_at: ``(n_chains,)`` first step whose iterate was non-finite or beyond ``max_norm``,
        or whose observed part had no direction (its squared norm was zero or overflowed); ``-1`` if
        none, ``0`` for a bad start. The chain is frozen from there, so no NaN is recorded.
    """

    steps: jax.Array
    x: jax.Array
    theta: jax.Array
    delta: jax.Array
    diverged_at: jax.Array

    @property
    def norm2(self) -> jax.Array:
        """``(n_chains, R + 1)`` squared norm of the observed part."""
        return jnp.sum(self.x**2, axis=-1)

    @property
    def direction(self) -> jax.Array:
        """``(n_chains, R + 1, P)`` the unit direction :math:`\\bar x` of the observed part."""
        return self.x / jnp.linalg.norm(self.x, axis=-1, keepdims=True)


def _has_direction(v: jax.Array) -> jax.Array:
    """Whether ``v / ||v||`` is defined and finite: ``||v||^2`` is positive and finite."""
    sq = jnp.sum(v**2)
    return jnp.isfinite(sq) & (sq > 0)


def sgd_chains(
    grad_fn: GradFn,
    theta0: Params,
    n_steps: int,
    *,
    eta,
    beta=0.0,
    rho=None,
    eps=1e-16,
    lam,
    key: jax.Array,
    n_chains: int,
    every: int = 1,
    part: Callable[[Params], Params] | None = None,
    max_norm: float = 1e8,
) -> ChainRecord:
    r"""Run ``n_chains`` independent chains of SGD with weight decay from ``theta0``; record every ``every`` steps.

    Each chain is the paper's Eq. (1) (with ``beta = 0``),

    .. math:: x_{k+1} = (1-\eta\lambda)\,x_k - \eta\, g(x_k, \kappa_k),

    with ``g = grad_fn`` and a fresh key :math:`\kappa_k` per step. With ``beta > 0`` it is heavy ball
    with coupled decay (:func:`dyncore.optimizers.heavy_ball`, PyTorch's SGD); with ``rho`` given it is
    AdamW (:func:`dyncore.optimizers.adamw` with :math:`\beta_1 = \beta`, :math:`\beta_2 = \rho`). Chain
    :math:`i` uses the key ``split(key, n_chains)[i]`` and step :math:`k` the key ``fold_in`` of it with
    :math:`k`: no two chains share noise, and the result is the same for any ``every``. The chains
    are :func:`dyncore.runner.run_chains` with an :class:`~dyncore.runner.Observer` that accumulates the
    angle at every step; hyper-parameters may be traced (no recompilation for new values inside a
    jitted caller), ``n_steps``, ``every`` and ``n_chains`` are static.

    Args:
      grad_fn: stochastic gradient ``grad_fn(x, key)`` (:func:`noisy_grad`,
        :func:`anisotropic_noise_grad`, :func:`dyncore.problems.minibatch_grad`).
      theta0: the common starting point (a pytree).
      n_steps: number of steps, a multiple of ``every``.
      eta: learning rate :math:`\eta > 0`.
      lam: weight decay :math:`\lambda \ge 0`.
      beta: momentum :math:`0 \le \beta < 1` (AdamW's :math:`\beta_1` when ``rho`` is given).
      key: PRNG key.
      n_chains: number of chains.
      every: record every ``every`` steps.
      rho: ``None`` for SGD / heavy ball, else AdamW's second-moment decay :math:`0 \le \rho < 1`.
      eps: AdamW's :math:`\varepsilon` (inside the root).
      part: the scale-invariant part to observe, ``part(params) -> pytree`` (default: all of it),
        e.g. the first-layer weights of a normalized network.
      max_norm: a chain whose parameter norm exceeds this counts as diverged.

    Returns:
      A :class:`ChainRecord`.

    Raises:
      ValueError: for invalid hyper-parameters, counts, or ``n_steps`` not a multiple of ``every``.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    every = check_positive_int("every", every)
    n_chains = check_positive_int("n_chains", n_chains)
    if n_steps % every:
        raise ValueError(f"n_steps must be a multiple of every={every}, got {n_steps}")
    check_hparams(eta=eta, lam=lam, beta=beta, rho=rho, eps=eps if rho is not None else None)
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    part = (lambda p: p) if part is None else part
    if rho is None:
        opt = heavy_ball(eta, beta=beta, lam=lam)
    else:
        opt = adamw(eta, beta=beta, rho=rho, eps=eps, lam=lam)
    theta0 = jax.tree_util.tree_map(as_float, theta0)

    def observed(params):
        return flat(part(params))

    def init(params):
        a = observed(params)
        return jnp.arctan2(a[1], a[0]), a  # the unwrapped angle, and the observed part before the last step

    def update(state, params, new, grad):
        theta, _ = state
        a, b = observed(params), observed(new)
        dtheta = jnp.arctan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1])
        return theta + dtheta, a

    # an observed part that is zero (or overflows) has no direction: the chain counts as diverged,
    # so the chord of every recorded step is finite
    angle = Observer(init, update, valid=lambda params: _has_direction(observed(params)))
    traj = run_chains(
        opt, None, theta0, n_steps, grad_fn=grad_fn, key=key, n_chains=n_chains, max_norm=max_norm,
        every=every, observe=angle,
    )
    thetas, prev = traj.observed
    xs = jax.vmap(jax.vmap(observed))(traj.params)
    steps = jnp.arange(0, n_steps + 1, every)

    def unit(v):
        return v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    chord = jnp.linalg.norm(unit(xs[:, 1:]) - unit(prev[:, 1:]), axis=-1)
    frozen = (traj.diverged_at[:, None] >= 0) & (traj.diverged_at[:, None] <= steps[None, 1:])
    deltas = jnp.where(frozen, 0.0, 2 * jnp.arcsin(jnp.minimum(chord / 2, 1.0)))
    deltas = jnp.concatenate([jnp.zeros_like(deltas[:, :1]), deltas], axis=1)
    div = traj.diverged_at
    return ChainRecord(steps, xs, thetas, deltas, div)


# ------------------------------------------------------------------------------ measurements
class Estimate(NamedTuple):
    """A Monte-Carlo estimate over independent chains.

    Attributes:
      value: the estimate (mean over chains of a per-chain statistic).
      stderr: its standard error, the across-chain standard deviation of the per-chain statistic
        divided by :math:`\\sqrt n` (chains are independent, so this is honest whatever the
        correlations in time within a chain).
    """

    value: jax.Array
    stderr: jax.Array


def _over_chains(per_chain: jax.Array) -> Estimate:
    n = per_chain.shape[0]
    return Estimate(jnp.mean(per_chain, axis=0), jnp.std(per_chain, axis=0, ddof=1) / jnp.sqrt(n))


def chain_mean(values: jax.Array, start: int = 0, stop: int | None = None) -> Estimate:
    r"""Mean of a recorded statistic over chains and over the records ``start:stop``, with its standard error.

    Each chain's time average over the window is one independent sample; e.g.
    ``chain_mean(rec.norm2**2, i0)`` is the equilibrium :math:`\mathbb E\|x\|^4` and
    ``chain_mean(rec.delta**2, i0)`` the equilibrium :math:`\mathbb E\Delta^2`.

    Args:
      values: ``(n_chains, R, ...)`` per-chain records (e.g. ``rec.norm2**2``, ``jnp.cos(2 * rec.theta)``).
      start, stop: the window of record indices.

    Returns:
      An :class:`Estimate`.
    """
    values = jnp.asarray(values)
    return _over_chains(jnp.mean(values[:, start:stop], axis=1))


def angle_variance(theta: jax.Array) -> jax.Array:
    r"""Variance over chains of the angle travelled, :math:`\operatorname{Var}_i(\Theta_{i,k} - \Theta_{i,0})`.

    Args:
      theta: ``(n_chains, R)`` unwrapped angles (:attr:`ChainRecord.theta`).

    Returns:
      ``(R,)`` the across-chain variance at each record (``ddof=1``); its relative standard error
      is about :math:`\sqrt{2/n}` (4.5% for 1000 chains). :func:`quadratic_variation` estimates the
      same quantity more precisely when the angle is a martingale.
    """
    theta = jnp.asarray(theta)
    return jnp.var(theta - theta[:, :1], axis=0, ddof=1)


def quadratic_variation(theta: jax.Array) -> Estimate:
    r"""Mean over chains of the quadratic variation of the angle at record resolution.

    .. math:: Q_k = \sum_{j:\,k_j < k} \big(\Theta_{k_{j+1}} - \Theta_{k_j}\big)^2 .

    When :math:`\Theta` is a martingale (no drift; e.g. the great circle with isotropic or
    symmetric noise) its increments are uncorrelated, so :math:`\mathbb E Q_k = \operatorname{Var}\Theta_k`,
    with a standard error that shrinks with the number of increments as well as with the number of
    chains.

    Returns:
      An :class:`Estimate` of shape ``(R,)`` (0 at the first record).
    """
    theta = jnp.asarray(theta)
    inc2 = jnp.diff(theta, axis=1) ** 2
    q = jnp.concatenate([jnp.zeros_like(theta[:, :1]), jnp.cumsum(inc2, axis=1)], axis=1)
    return _over_chains(q)


def circular_order(theta: jax.Array, m: int = 1) -> jax.Array:
    r"""Circular order parameter :math:`|\mathbb E_i\, e^{i m\theta_{i,k}}|` over chains, per record.

    It is 1 while all chains sit at the same angle and decays to the value of the stationary law
    (0 for a uniform one); for a Gaussian spread of variance :math:`V` it is :math:`e^{-m^2V/2}`.
    """
    theta = jnp.asarray(theta)
    return jnp.abs(jnp.mean(jnp.exp(1j * m * theta), axis=0))


def diffusion_rate(
    theta: jax.Array, steps: jax.Array, start: int = 0, stop: int | None = None
) -> Estimate:
    r"""Diffusion rate of the angle per step over the records ``start:stop``:

    .. math:: s = \frac{\mathbb E\sum_j (\Theta_{k_{j+1}} - \Theta_{k_j})^2}{k_{\rm stop} - k_{\rm start}},

    the growth rate of :func:`quadratic_variation` (of :math:`\operatorname{Var}\Theta_k` for a
    martingale). At equilibrium on the great circle in :math:`\mathbb R^D` it is
    :math:`2\eta\lambda/(D-1)` at leading order (the clock's rate), for
    :math:`\hat\sigma\sqrt{\eta\lambda} \ll 1 \ll \hat\sigma/\sqrt{\eta\lambda}`. The corrections are of
    order :math:`\sqrt{\eta\lambda}` and depend on the noise level :math:`\hat\sigma` (a small
    :math:`\hat\sigma` enlarges the norm and slows the angle; a large one sends the iterates off the
    manifold, where the angle moves faster), and they dwarf the discrete correction
    :math:`-\eta^2\lambda^2/(D-1)`; chapter 6 derives them at first order.

    The sum of squared record-to-record increments is unbiased only when the increments of
    single steps are uncorrelated (SGD). With heavy-ball momentum :math:`\beta` they are an AR(1)
    filter of the noise, and records :math:`n` steps apart read the long-run rate times
    :math:`1 - 2\beta(1-\beta^n)/\big(n(1-\beta^2)\big)` (0.81 for :math:`\beta = 0.9`, :math:`n = 50`):
    record at spacings much longer than :math:`1/(1-\beta)` or divide by that factor (chapter 6).

    Args:
      theta: ``(n_chains, R)`` unwrapped angles.
      steps: ``(R,)`` their step indices.
      start, stop: record indices of the window (``stop=None``: to the end).

    Returns:
      An :class:`Estimate` in radians² per step.
    """
    theta, steps = jnp.asarray(theta)[:, start:stop], jnp.asarray(steps)[start:stop]
    per_chain = jnp.sum(jnp.diff(theta, axis=1) ** 2, axis=1) / (steps[-1] - steps[0])
    return _over_chains(per_chain)


def first_passage(
    steps: ArrayLike, values: ArrayLike, level: float, *, rising: bool = False
) -> float:
    r"""First step at which a recorded statistic crosses ``level``, linearly interpolated.

    Use it as a mixing time: the step where :func:`circular_order` first falls to 1/2, or where
    the angle variance (:func:`quadratic_variation`) first rises to :math:`2\ln 2`.

    Args:
      steps: ``(R,)`` step indices.
      values: ``(R,)`` the statistic.
      level: the level to cross.
      rising: look for ``values >= level`` (an increasing statistic) instead of ``values <= level``.

    Returns:
      The interpolated step, or ``inf`` when the statistic never crosses ``level`` (a NumPy float;
      not jit-able).
    """
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if rising:
        values, level = -values, -level
    below = np.nonzero(values <= level)[0]
    if below.size == 0:
        return float("inf")
    j = int(below[0])
    if j == 0:
        return float(steps[0])
    v0, v1 = values[j - 1], values[j]
    return float(steps[j - 1] + (steps[j] - steps[j - 1]) * (v0 - level) / (v0 - v1))


# ------------------------------------------------------------------------------------ theory
def stationary_cos2(kappa, power=1.0, n_grid: int = 4096) -> jax.Array:
    r""":math:`\mathbb E_\pi\cos 2\theta` for the law :math:`\pi(\theta) \propto (1 + \kappa\cos 2\theta)^{-p}` on the circle.

    ``power=1`` is the equilibrium under anisotropic noise (:func:`anisotropic_noise_grad`), with
    the closed form :math:`(\sqrt{1-\kappa^2} - 1)/\kappa`; ``power=(D - 2)/2`` is the flat-region bias
    under modulated curvature in :math:`\mathbb R^D` (:func:`modulated_circle`; 0.5 for :math:`D = 3`).
    Computed by the trapezoidal rule on ``n_grid`` points, exponentially accurate for these smooth
    periodic integrands.

    Raises:
      ValueError: if ``kappa`` is not in ``[0, 1)`` or ``n_grid`` is not a positive integer.
    """
    _check_kappa(kappa)
    n_grid = check_positive_int("n_grid", n_grid)
    th = jnp.linspace(0.0, 2 * jnp.pi, n_grid, endpoint=False)
    w = (1 + kappa * jnp.cos(2 * th)) ** (-power)
    return jnp.sum(w * jnp.cos(2 * th)) / jnp.sum(w)
