r"""The principal flow of gradient descent, sharpness tracking and the drift-adjusted learning rate.

Rosca, Wu, Qin & Dherin (TMLR 2023) keep, at every order of backward error analysis, the terms of
GD's modified equation that are built from the gradient and the Hessian only,
:math:`-\tfrac{1}{p+1}\eta^p H^p g`, and sum them. The result is the **principal flow** (PF),
Definition 3.1 (Eq. 12) of the paper:

.. math:: \dot\theta = \sum_i \alpha(\eta\mu_i)\,(g^\top u_i)\,u_i = \varphi(\eta H)\,g,
          \qquad \alpha(z) = \varphi(z) = \frac{\log(1 - z)}{z},

where :math:`g = \nabla L_\lambda`, :math:`H = \nabla^2 L_\lambda = \sum_i \mu_i u_i u_i^\top`
and :math:`L_\lambda = L + \tfrac\lambda2\|\theta\|^2` (weight decay shifts every eigenvalue by
:math:`\lambda`). The paper writes :math:`h` for the learning rate and :math:`\lambda_i` for the
Hessian eigenvalues; the book writes :math:`\eta` and :math:`\mu_i`, because :math:`\lambda` is
weight decay.

Numerics (all documented where they are used):

* **branch-safe logarithm**: for :math:`\mathrm{Re}\,z > 1` the coefficient is
  :math:`(\operatorname{Log}(z-1) + i\pi)/z` (the paper's Section 3.1 form), which is continuous
  across the real axis there. The principal branch :math:`\operatorname{Log}(1-z)` evaluated point
  by point flips between :math:`\pm i\pi` when :math:`z` is almost real, which pins complex PF
  trajectories of non-quadratic losses to the real axis (they then track GD badly);
* **series** :math:`-\sum_{p\le 6} z^p/(p+1)` for :math:`|z| < 10^{-3}` (no 0/0 at
  :math:`\mu = 0`, where :math:`\alpha = -1`);
* **guard at** :math:`\eta\mu = 1`, where :math:`\alpha = -\infty` (GD removes that component in
  one step): :math:`|1 - z|` is raised to ``SINGULAR_GUARD`` :math:`= 10^{-12}`, so
  :math:`\alpha \approx -27.6` stays finite; closed forms treat this case exactly;
* **complex parameters**: along a complex PF trajectory the Hessian is complex *symmetric*, not
  Hermitian, so the field uses ``eig`` and :math:`V^{-1}g`, never ``eigh`` and :math:`V^\top g`.
  The loss must be holomorphic (tanh, polynomials, exp, softplus — not ReLU or ``abs``).

>>> import jax.numpy as jnp
>>> rate = pf_rate(jnp.array([1.0, 3.0]), eta=0.5)      # log(1 - eta mu) / eta
>>> [complex(round(float(r.real), 6), round(float(r.imag), 6)) for r in rate]   # (log|1 - eta mu| + i pi [eta mu > 1]) / eta
[(-1.386294+0j), (-1.386294+6.283185j)]
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from .curvature import decayed_spectrum, hvp, lanczos, top_eigenpairs, with_decay
from .runner import Observer
from .trees import as_complex
from .optimizers import dal_rate
from .validation import check_hparams, check_positive_int

__all__ = [
    "SERIES_RADIUS",
    "SINGULAR_GUARD",
    "alpha_pf",
    "alpha_igr",
    "pf_rate",
    "alpha_field",
    "principal_field",
    "principal_field_topk",
    "EoSDiagnostics",
    "eos_observer",
    "third_order_term",
    "principal_flow_quadratic",
    "dal_rate",
    "heavy_ball_log_flow",
    "heavy_ball_spectral_radius",
]

Params = Any
Field = Callable[[Params], Params]
Loss = Callable[[Params], jax.Array]

SERIES_RADIUS = 1e-3
"""Below this :math:`|z|` the coefficient :math:`\\alpha(z)` is evaluated by its Taylor series."""
SINGULAR_GUARD = 1e-12
"""Smallest :math:`|1 - z|` used in :math:`\\log(1-z)`; at :math:`z = 1` the PF rate is infinite."""
_SERIES_ORDER = 6

_tmap = jax.tree_util.tree_map


# ---------------------------------------------------------------------------------- coefficients
def _log_one_minus(z: jax.Array) -> jax.Array:
    """Principal :math:`\\log(1 - z)` for :math:`\\mathrm{Re}\\,z \\le 1`, accurate near 0.

    :math:`\\log|1-z| = \\tfrac12\\operatorname{log1p}(x(x-2) + y^2)` avoids the cancellation of
    ``log(1 - z)`` for :math:`|z| < 1/2` (JAX's complex ``log1p`` has the same 1e-14 relative error
    near 0); elsewhere ``log(1 - z)``, where :math:`1 - z` is exact near :math:`z = 1`.
    """
    x, y = jnp.real(z), jnp.imag(z)
    near_zero = 0.5 * jnp.log1p(x * (x - 2) + y * y) + 1j * jnp.arctan2(-y, 1 - x)
    return jnp.where(jnp.abs(z) < 0.5, near_zero, jnp.log(1 - z))  # 1 - z is exact near z = 1


@partial(jax.jit, static_argnames="principal_branch")
def _alpha_pf(z: jax.Array, principal_branch: bool) -> jax.Array:
    z = as_complex(z)
    small = jnp.abs(z) < SERIES_RADIUS
    zs = jnp.where(small, 0.5, z)  # sanitised: no 0/0 inside the unused branch (finite gradients)
    near_one = jnp.abs(1 - zs) < SINGULAR_GUARD
    zs = jnp.where(near_one, 1 - SINGULAR_GUARD, zs)
    if principal_branch:
        log = jnp.log(1 - zs)
    else:
        log = jnp.where(jnp.real(zs) > 1, jnp.log(zs - 1) + 1j * jnp.pi, _log_one_minus(zs))
    series = jnp.zeros_like(z)
    for p in range(_SERIES_ORDER, -1, -1):  # Horner: -(1 + z/2 + z^2/3 + ...)
        series = series * z - 1.0 / (p + 1)
    return jnp.where(small, series, log / zs)


def alpha_pf(z: ArrayLike, *, principal_branch: bool = False) -> jax.Array:
    r"""The PF coefficient :math:`\alpha_{PF}(z) = \log(1-z)/z` of Table 1, branch-safe.

    .. math:: \alpha_{PF}(z) = \begin{cases}
              -\sum_{p=0}^{6} \frac{z^p}{p+1} & |z| < 10^{-3} \\
              \operatorname{Log}(1 - z)/z & \mathrm{Re}\,z \le 1 \\
              \big(\operatorname{Log}(z - 1) + i\pi\big)/z & \mathrm{Re}\,z > 1
              \end{cases}

    with :math:`\operatorname{Log}` the principal logarithm (Rosca et al. 2023, Eq. 12 and the
    case analysis of Section 3.1). The two logarithmic cases agree on the real axis beyond 1
    (:math:`+i\pi`); the piecewise form is continuous across it, which the principal
    :math:`\operatorname{Log}(1-z)` is not. Real values: :math:`\alpha \in (-1, 0)` for
    :math:`z < 0`, :math:`\alpha(0) = -1`, :math:`\alpha \to -\infty` as :math:`z \to 1`,
    :math:`\mathrm{Im}\,\alpha = \pi/z` and :math:`\mathrm{sign}\,\mathrm{Re}\,\alpha =
    \mathrm{sign}(z - 2)` for :math:`z > 1`. The piecewise form moves the branch cut off the real
    axis onto the ray :math:`\mathrm{Re}\,z = 1,\ \mathrm{Im}\,z > 0`, across which the value jumps by
    :math:`2\pi i/z`; below the real axis it is continuous. A complex trajectory whose
    :math:`\eta\mu` crosses that ray sees a discontinuous field.

    Args:
      z: :math:`z = \eta\mu`, real or complex, any shape.
      principal_branch: evaluate :math:`\operatorname{Log}(1-z)/z` with the principal branch point
        by point instead (the pitfall; kept for the comparison in the book).

    Returns:
      Complex array of the shape of ``z``. At :math:`|1 - z| < 10^{-12}` the value is that of
      :math:`|1-z| = 10^{-12}`, about :math:`-27.6/z`: finite, where the exact rate is infinite.
    """
    return _alpha_pf(z, principal_branch=bool(principal_branch))


def alpha_igr(z: ArrayLike) -> jax.Array:
    r"""The IGR coefficient :math:`\alpha_{IGR}(z) = -(1 + z/2)` of Table 1 (first-order flow)."""
    return -(1 + 0.5 * jnp.asarray(z))


def pf_rate(mu: ArrayLike, *, eta) -> jax.Array:
    r"""Rate :math:`\kappa = \tfrac1\eta\log(1 - \eta\mu) = \mu\,\alpha_{PF}(\eta\mu)` of a PF mode.

    Along an eigendirection with curvature :math:`\mu` the PF multiplies the component by
    :math:`e^{\kappa t}`, so :math:`e^{\kappa\eta} = 1 - \eta\mu` is GD's factor per step. At a
    critical point these are the eigenvalues of the PF's Jacobian (Rosca et al. 2023, Eq. 16):
    real for :math:`\eta\mu < 1` (negative for :math:`0 < \eta\mu < 1`, zero at :math:`\mu = 0`,
    positive for :math:`\mu < 0`: a saddle direction repels), with real part
    :math:`\log|1-\eta\mu|/\eta`, which changes sign at :math:`\eta\mu = 2`, and imaginary part
    :math:`\pi/\eta` for :math:`\eta\mu > 1`.

    Args:
      mu: curvature(s) :math:`\mu` (Hessian eigenvalues, weight decay included).
      eta: learning rate.

    Returns:
      Complex array; finite at :math:`\eta\mu = 1` through the guard of :func:`alpha_pf`.

    Raises:
      ValueError: if ``eta <= 0``.
    """
    check_hparams(eta=eta)
    mu = jnp.asarray(mu)
    return mu * alpha_pf(eta * mu)


# ------------------------------------------------------------------------------------ PF fields
def _is_complex(theta) -> bool:
    return any(jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(theta))


def _complex_unravel(theta):
    """``unravel`` that builds complex leaves with the structure of ``theta``."""
    return ravel_pytree(_tmap(as_complex, theta))[1]


def _flat_derivatives(loss_lam: Loss, theta):
    """Flat ``x``, ``grad(x)`` and ``hvp(x, v)``; holomorphic derivatives for complex ``theta``."""
    flat, unravel = ravel_pytree(theta)
    cplx = jnp.iscomplexobj(flat)

    def f(x):
        return loss_lam(unravel(x))

    grad = jax.grad(f, holomorphic=cplx)

    def hvp_flat(x, v):
        return jax.jvp(grad, (x,), (v,))[1]

    return flat, grad, hvp_flat, cplx


def third_order_term(loss: Loss, *, lam=0.0) -> Field:
    r"""The non-principal third-order term :math:`\nabla^3 L_\lambda[g, g]` as a field.

    It is the part of the :math:`\eta^2` BEA correction that the principal flow drops: GD's
    modified equation to :math:`O(\eta^4)` is (Rosca et al. 2023, Eq. 8)

    .. math:: \dot\theta = -g - \tfrac\eta2 Hg - \eta^2\big(\tfrac13 H^2 g
              + \tfrac1{12}\nabla^3 L_\lambda[g, g]\big),

    and Eq. (14) adds :math:`-\tfrac{\eta^2}{12}\nabla^3 L_\lambda[g,g]` to the PF. Computed as the
    derivative of :math:`\theta \mapsto H(\theta)v` along :math:`v = g(\theta)` held fixed: two
    nested forward-mode products, no third-derivative tensor. Works for complex parameters
    (holomorphic losses).

    Raises:
      ValueError: if ``lam < 0``.
    """
    check_hparams(lam=lam)
    loss_lam = with_decay(loss, lam)

    def field(theta):
        flat, grad, hvp_flat, _ = _flat_derivatives(loss_lam, theta)
        g = grad(flat)
        t3 = jax.jvp(lambda x: hvp_flat(x, g), (flat,), (g,))[1]
        return _complex_unravel(theta)(t3) if jnp.iscomplexobj(t3) else ravel_pytree(theta)[1](t3)

    return field


def alpha_field(loss: Loss, alpha: Callable[[jax.Array], jax.Array], *, eta, lam=0.0,
                third_order: bool = False) -> Field:
    r"""The flow :math:`\dot\theta = \sum_i \alpha(\eta\mu_i)(g^\top u_i)u_i` of Table 1 (dense).

    Every flow of Table 1 of Rosca et al. (2023) has this form: gradient flow
    (:math:`\alpha = -1`), the IGR flow (:func:`alpha_igr`), the principal flow (:func:`alpha_pf`),
    and any truncation of the principal series, e.g. :math:`-(1 + z/2 + z^2/3)`, the principal part
    of the third-order flow, Eq. (8). Computed as :math:`V[\alpha(\eta\mu) \odot V^{-1}g]`
    with :math:`H = V\mathrm{diag}(\mu)V^{-1}`, where :math:`g, H` are the gradient and Hessian of
    :math:`L_\lambda = L + \tfrac\lambda2\|\theta\|^2`. With ``third_order=True`` the
    non-principal term :math:`-\tfrac{\eta^2}{12}\nabla^3 L_\lambda[g, g]` is added
    (:func:`third_order_term`; Eq. 8 and 14).

    For real parameters :math:`H` is symmetric: ``eigh`` and :math:`V^{-1} = V^\top`; the velocity
    is complex as soon as :math:`\alpha` is. For complex parameters (a complex trajectory, see
    :func:`~dyncore.integration.integrate_complex`) the holomorphic Hessian is complex *symmetric*, not Hermitian:
    ``eig`` and a linear solve for :math:`V^{-1}g` are used (``eigh`` would conjugate). The Hessian
    may be nearly defective there (Remark 4.1 of the paper): keep horizons short. Cost: one dense
    Hessian and one eigendecomposition per call (a few hundred parameters at most; see
    :func:`principal_field_topk` beyond).

    Args:
      loss: scalar loss of a pytree (holomorphic if evaluated at complex points).
      eta: learning rate :math:`\eta` (the paper's :math:`h`); may be traced.
      alpha: the coefficient, a function of :math:`z = \eta\mu` (complex arrays).
      lam: weight decay :math:`\lambda`.
      third_order: add the non-principal third-order term.

    Returns:
      ``field(theta) -> theta_dot`` with complex leaves.

    Raises:
      ValueError: if ``eta <= 0`` or ``lam < 0``.
    """
    check_hparams(eta=eta, lam=lam)
    loss_lam = with_decay(loss, lam)
    t3 = third_order_term(loss, lam=lam) if third_order else None

    def field(theta):
        flat, grad, _, cplx = _flat_derivatives(loss_lam, theta)
        g = grad(flat)
        H = jax.jacfwd(grad, holomorphic=cplx)(flat)
        H = 0.5 * (H + H.T)  # symmetric (complex symmetric for complex theta), not Hermitian
        if cplx:
            mu, V = jnp.linalg.eig(H)
            coeff = jnp.linalg.solve(V, g.astype(V.dtype))
        else:
            mu, V = jnp.linalg.eigh(H)
            coeff = V.T @ g
        out = V @ (as_complex(alpha(as_complex(eta * mu))) * coeff)
        if t3 is not None:
            out = out - eta**2 / 12 * ravel_pytree(t3(theta))[0]
        return _complex_unravel(theta)(out)

    return field


def principal_field(loss: Loss, *, eta, lam=0.0, third_order: bool = False,
                    principal_branch: bool = False) -> Field:
    r"""The principal flow's vector field (dense), Rosca et al. (2023), Eq. (12), or Eq. (14).

    .. math:: \dot\theta = \sum_i \frac{\log(1 - \eta\mu_i)}{\eta\mu_i}\,(g^\top u_i)\,u_i
              \;\Big(- \tfrac{\eta^2}{12}\nabla^3 L_\lambda[g, g]\ \text{if third\_order}\Big),

    i.e. :func:`alpha_field` with the branch-safe :func:`alpha_pf`. On a quadratic it reproduces
    every GD iterate exactly, for any :math:`\eta` with :math:`\eta\mu_i \ne 1` (closed form:
    :func:`principal_flow_quadratic`). On other losses it matches one GD step to
    :math:`O(\eta^3)` (it lacks the non-principal :math:`\eta^2` term) but with a small constant
    when :math:`\eta\mu_0` is of order one; ``third_order=True`` restores :math:`O(\eta^4)`.

    Args:
      loss: scalar loss of a pytree (holomorphic if evaluated at complex points).
      eta: learning rate :math:`\eta` (the paper's :math:`h`); may be traced.
      lam: weight decay :math:`\lambda`.
      third_order: add the non-principal term of Eq. (14) (see :func:`third_order_term`).
      principal_branch: use the point-wise principal logarithm (the pitfall, for comparison).

    Returns:
      ``field(theta) -> theta_dot`` with complex leaves.

    Raises:
      ValueError: if ``eta <= 0`` or ``lam < 0``.
    """

    def alpha(z):
        return alpha_pf(z, principal_branch=principal_branch)

    return alpha_field(loss, alpha, eta=eta, lam=lam, third_order=third_order)


def principal_field_topk(loss: Loss, *, eta, lam=0.0, k: int = 1, num_iters: int = 20,
                         remainder: str = "igr", key: jax.Array | None = None) -> Field:
    r"""Matrix-free principal flow: exact on the top ``k`` eigenpairs, a series on the rest.

    .. math:: \dot\theta = \sum_{i<k} \alpha_{PF}(\eta\mu_i)(g^\top u_i)\,u_i
              \; - \; \big(r + \tfrac\eta2 P H r\big), \qquad r = P g, \quad P = I - U_kU_k^\top,

    with the top eigenpairs from Lanczos (:func:`dyncore.curvature.top_eigenpairs`, ``num_iters``
    Hessian-vector products). **Remainder treatment**: on the complement of the top ``k``
    eigenvectors the PF coefficient is replaced by its Taylor polynomial, :math:`-(1 + z/2)` (IGR,
    ``remainder="igr"``, one extra HVP) or :math:`-1` (gradient flow, ``remainder="gf"``). With
    :math:`\zeta = \eta\max_{i\ge k}|\mu_i| < 1` the per-mode coefficient error is at most
    :math:`\zeta^2/(3(1-\zeta))` (IGR) or :math:`\zeta/(2(1-\zeta))` (GF), times
    :math:`\|r\|`. Choose ``k`` so that every curvature with :math:`\eta|\mu| \gtrsim 0.1`,
    including large *negative* ones (Lanczos returns the largest algebraic eigenvalues), is among
    the top ``k``. Real parameters only (Lanczos assumes a symmetric real Hessian).

    Args:
      loss: scalar loss.
      eta: learning rate.
      lam: weight decay.
      k: number of exact eigendirections.
      num_iters: Lanczos iterations (``>= k``).
      remainder: ``"igr"`` or ``"gf"``.
      key: PRNG key of Lanczos' random start (fixed by default, so the field is deterministic).

    Returns:
      ``field(theta) -> theta_dot`` (complex leaves).

    Raises:
      ValueError: for invalid hyper-parameters, an unknown ``remainder``, or complex parameters.
    """
    check_hparams(eta=eta, lam=lam)
    k = check_positive_int("k", k)
    num_iters = check_positive_int("num_iters", num_iters)
    if remainder not in ("igr", "gf"):
        raise ValueError(f"remainder must be 'igr' or 'gf', got {remainder!r}")
    loss_lam = with_decay(loss, lam)

    def field(theta):
        if _is_complex(theta):
            raise ValueError("principal_field_topk needs real parameters; use principal_field")
        flat, unravel = ravel_pytree(theta)
        ep = top_eigenpairs(loss_lam, theta, k, num_iters=num_iters, key=key)
        U = ep.vectors
        g = ravel_pytree(jax.grad(loss_lam)(theta))[0]
        c = U.T @ g
        top = U @ (alpha_pf(eta * ep.values) * c)
        r = g - U @ c
        rest = -r
        if remainder == "igr":
            hr = ravel_pytree(hvp(loss_lam, theta, unravel(r)))[0]
            rest = rest - 0.5 * eta * (hr - U @ (U.T @ hr))
        return _complex_unravel(theta)(top + rest)

    return field


class EoSDiagnostics(NamedTuple):
    """What :func:`eos_observer` records at an iterate :math:`\\theta` of a run.

    Attributes:
      values: ``(k,)`` top eigenvalues :math:`\\mu_0 \\ge \\dots \\ge \\mu_{k-1}` of
        :math:`\\nabla^2 L_\\lambda(\\theta)`; ``eta * values[0] > 2`` is past the edge of stability.
      vectors: ``(d, k)`` their unit eigenvectors over the flattened parameters, signs continued
        along the run (each has a non-negative overlap with the previous iterate's).
      residuals: ``(k,)`` Lanczos' estimates of :math:`\\|Hu - \\mu u\\|`.
      num_matvecs: the Hessian-vector products this iterate cost.
      pf_rate: the principal flow's rate of change of the loss at :math:`\\theta`, with the top
        ``k`` modes exact and gradient flow on the rest,
        :math:`\\dot L = \\sum_{i<k}\\mathrm{Re}\\,\\alpha_{PF}(\\eta\\mu_i)\\,(g^\\top u_i)^2
        - \\|g - U U^\\top g\\|^2`; ``eta * pf_rate`` is its one-step prediction of the change of
        :math:`L_\\lambda`, which turns positive when a mode passes :math:`\\eta\\mu = 2`.
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array
    num_matvecs: jax.Array
    pf_rate: jax.Array


def eos_observer(loss: Loss, *, eta, k: int = 1, lam=0.0, tol: float = 1e-3, num_iters: int | None = None,
                 cold_iters: int | None = None, key: jax.Array | None = None) -> Observer:
    r"""Track the top Hessian eigenpairs and the principal flow's prediction along a training run.

    An :class:`dyncore.runner.Observer` for :func:`dyncore.runner.run`: at every iterate it runs
    Lanczos (:func:`dyncore.curvature.lanczos`, stopping at relative residual ``tol``) on the
    Hessian of :math:`L_\lambda = L + \tfrac\lambda2\|\theta\|^2`, **warm-started** from the sum of
    the previous iterate's ``k`` eigenvectors, and evaluates the PF's loss rate
    (:class:`EoSDiagnostics`). The gradient is linearised once per iterate, which gives the
    gradient the PF needs and the forward pass that every product reuses; everything is compiled
    once with the run. The first iterate gets a cold start with up to ``cold_iters`` products.
    ``Trajectory.observed`` then holds the diagnostics of each saved iterate
    (``observed.values[j]`` at ``params[j]``).

    Args:
      loss: scalar loss (without weight decay; pass ``lam``).
      eta: learning rate of the run (for :math:`\alpha_{PF}(\eta\mu)`).
      k: eigenpairs tracked.
      lam: weight decay.
      tol: relative residual at which Lanczos stops (``0 < tol < 1``).
      num_iters: most products per iterate after the first (default ``max(40, 10 k)``); where
        it is reached before ``tol``, ``residuals`` shows the accuracy obtained.
      cold_iters: most products at the first iterate (default ``max(100, 15 k)``).
      key: PRNG key of the cold start (default ``PRNGKey(0)``).

    Returns:
      An :class:`~dyncore.runner.Observer` whose state is an :class:`EoSDiagnostics`.

    Raises:
      ValueError: for invalid ``eta``, ``lam``, ``k``, ``tol`` or iteration counts.

    Example (GD on a quadratic whose top curvature is 3, with ``eta = 0.5``: ``eta * mu = 1.5``,
    oscillating but stable, and the PF predicts the loss to fall):

    >>> import jax, jax.numpy as jnp
    >>> from dyncore.optimizers import gd
    >>> from dyncore.runner import run
    >>> loss = lambda th: 0.5 * jnp.sum(jnp.array([3.0, 1.0, 0.5]) * th**2)
    >>> obs = eos_observer(loss, eta=0.5, k=2)
    >>> traj = run(gd(0.5), loss, jnp.ones(3), 5, observe=obs)
    >>> [round(float(x), 4) for x in traj.observed.values[-1]], bool(traj.observed.pf_rate[-1] < 0)
    ([3.0, 1.0], True)
    """
    check_hparams(eta=eta, lam=lam)
    k = check_positive_int("k", k)
    num_iters = check_positive_int("num_iters", max(40, 10 * k) if num_iters is None else num_iters)
    cold_iters = check_positive_int("cold_iters", max(100, 15 * k) if cold_iters is None else cold_iters)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    loss_lam = with_decay(loss, lam)
    key = jax.random.PRNGKey(0) if key is None else key

    def diagnose(theta, v0, iters, previous):
        flat, unravel = ravel_pytree(theta)
        g, matvec = jax.linearize(lambda x: ravel_pytree(jax.grad(loss_lam)(unravel(x)))[0], flat)
        ep = lanczos(matvec, v0, k, num_iters=min(iters, flat.shape[0]), tol=tol, key=key)
        U = ep.vectors
        if previous is not None:  # continue the signs along the run
            U = U * jnp.where(jnp.sum(U * previous, axis=0) < 0, -1.0, 1.0)[None, :]
        c = U.T @ g
        rate = jnp.real(alpha_pf(eta * ep.values)) @ c**2 - (g @ g - c @ c)
        return EoSDiagnostics(ep.values, U, ep.residuals, ep.num_matvecs, rate.astype(g.dtype))

    def init(theta0):
        flat = ravel_pytree(theta0)[0]
        return diagnose(theta0, jax.random.normal(key, flat.shape, flat.dtype), cold_iters, None)

    def update(state, theta, new_theta, grad):
        return diagnose(new_theta, jnp.sum(state.vectors, axis=1), num_iters, state.vectors)

    return Observer(init, update)


def principal_flow_quadratic(A: ArrayLike, theta0: ArrayLike, ts: ArrayLike, *, eta, lam=0.0,
                             b: ArrayLike | None = None) -> jax.Array:
    r"""Closed-form PF on the quadratic :math:`L = \tfrac12\theta^\top A\theta - b^\top\theta`.

    With :math:`J = A + \lambda I = \sum_i \mu_i u_i u_i^\top`, :math:`\kappa_i = \tfrac1\eta
    \log(1 - \eta\mu_i)` (:func:`pf_rate`), :math:`c_i = u_i^\top\theta` and
    :math:`\beta_i = u_i^\top b`,

    .. math:: c_i(t) = e^{\kappa_i t} c_i(0) + \frac{\beta_i}{\mu_i}\big(1 - e^{\kappa_i t}\big)
              \quad\Big(\to c_i(0) + t\beta_i \text{ for } \mu_i = 0\Big).

    This is the corrected form of Remark 3.1 of Rosca et al. (2023), whose printed affine term is
    only the :math:`\mu_i \to 0` limit. At :math:`t = n\eta`,
    :math:`e^{\kappa_i t} = (1 - \eta\mu_i)^n`, so the PF passes through every GD iterate, for
    every :math:`\eta`; between iterates it is complex when :math:`\eta\mu_i > 1`. At
    :math:`\eta\mu_i = 1` exactly, :math:`e^{\kappa_i t} = 0` for :math:`t > 0`.
    :func:`dyncore.eom.log_flow_quadratic` is the real special case :math:`\eta\mu_i < 1`,
    :math:`b = 0`.

    Args:
      A: symmetric ``(d, d)`` matrix (symmetrised).
      theta0: ``(d,)`` start.
      ts: times.
      eta: learning rate.
      lam: weight decay.
      b: optional linear term (the sign convention of :func:`dyncore.problems.quadratic`).

    Returns:
      Complex ``(len(ts), d)`` array.

    Raises:
      ValueError: if ``eta <= 0`` or ``lam < 0``.
    """
    check_hparams(eta=eta, lam=lam)
    A = jnp.asarray(A, dtype=jnp.result_type(float))
    b = jnp.zeros(A.shape[0], A.dtype) if b is None else jnp.asarray(b, A.dtype)
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=A.dtype))
    return _pf_quadratic(A, jnp.asarray(theta0, A.dtype), ts, eta, lam, b)


@jax.jit
def _pf_quadratic(A, theta0, ts, eta, lam, b):
    mu, U = decayed_spectrum(A, lam)
    ts = ts[:, None]
    kappa = (mu * _alpha_pf(eta * mu, principal_branch=False))[None, :]
    singular = jnp.abs(1 - eta * mu)[None, :] < SINGULAR_GUARD
    decay = jnp.where(singular, (ts == 0).astype(kappa.dtype), jnp.exp(kappa * ts))
    mu_s = jnp.where(mu == 0, 1.0, mu)[None, :]
    gain = jnp.where(singular, 1 - decay, -jnp.expm1(kappa * ts))  # 1 − e^{κt}, accurate for small κt
    q = jnp.where(mu[None, :] == 0, ts, gain / mu_s)  # (1 − e^{κt})/μ, → t at μ = 0
    c = (U.T @ theta0)[None, :] * decay + (U.T @ b)[None, :] * q
    return c @ U.T.astype(c.dtype)


# --------------------------------------------------------------------------- sharpness tracking
# --------------------------------------------------------------------------------- drift and DAL
# ---------------------------------------------------------------------------- momentum extension
def heavy_ball_spectral_radius(z: ArrayLike, *, beta) -> jax.Array:
    r"""Largest :math:`|r|` over the roots of :math:`r^2 - (1 + \beta - z)r + \beta = 0`.

    Heavy ball on a quadratic mode with :math:`z = \eta\mu` multiplies the state
    :math:`(\theta_k, \theta_{k-1})` by a matrix with these eigenvalues; it converges iff the
    radius is below 1, i.e. iff :math:`0 < z < 2(1 + \beta)` (for :math:`0 \le \beta < 1`).

    Raises:
      ValueError: if ``beta`` is not in ``[0, 1)``.
    """
    check_hparams(beta=beta)
    return _hb_radius(jnp.asarray(z, dtype=jnp.result_type(float)), beta)


@jax.jit
def _hb_radius(z, beta):
    a = as_complex(1 + beta - z)
    disc = jnp.sqrt(a * a - 4 * beta)
    return jnp.maximum(jnp.abs(a + disc), jnp.abs(a - disc)) / 2


def heavy_ball_log_flow(A: ArrayLike, theta0: ArrayLike, ts: ArrayLike, *, eta, beta,
                        lam=0.0) -> jax.Array:
    r"""Exact continuous flow through every heavy-ball iterate on a quadratic (an extension).

    Not in Rosca et al. (2023), who give no principal flow for momentum; the book derives it. On
    each eigendirection of :math:`J = A + \lambda I` (curvature :math:`\mu`), heavy ball
    :math:`\theta_{k+1} = \theta_k - \eta\mu\theta_k + \beta(\theta_k - \theta_{k-1})` is
    :math:`s_{k+1} = M s_k` with :math:`s_k = (\theta_k, \theta_{k-1})` and

    .. math:: M = \begin{pmatrix} 1 + \beta - \eta\mu & -\beta \\ 1 & 0 \end{pmatrix},
              \qquad \dot s = \tfrac1\eta \operatorname{Log}(M)\, s,
              \qquad s(t) = M^{t/\eta} s_0 .

    :math:`M^{t/\eta}` is evaluated from the eigenvalues :math:`r_{1,2}` of :math:`M` by the
    two-point formula :math:`f(M) = f(r_2) I + f[r_1, r_2](M - r_2 I)` with
    :math:`f(r) = e^{(t/\eta)\operatorname{Log} r}` (a derivative for :math:`r_1 \approx r_2`, where
    :math:`M` can be a Jordan block), so :math:`s(n\eta) = M^n s_0` exactly. Started at rest,
    :math:`s_0 = (\theta_0, \theta_0)`, as :func:`dyncore.optimizers.heavy_ball`. For :math:`\beta = 0`,
    :math:`M` is singular and :math:`\operatorname{Log} M` does not exist; the formula (with
    :math:`0^{t/\eta} = 0` for :math:`t > 0`) then returns the principal flow of GD.

    Args:
      A: symmetric ``(d, d)`` matrix.
      theta0: ``(d,)`` start.
      ts: times.
      eta: learning rate.
      beta: momentum in ``[0, 1)``.
      lam: weight decay.

    Returns:
      Complex ``(len(ts), d)`` array :math:`\theta(t)`; its real part at :math:`t = k\eta` is the
      heavy-ball iterate :math:`\theta_k`.

    Raises:
      ValueError: for invalid hyper-parameters.
    """
    check_hparams(eta=eta, beta=beta, lam=lam)
    A = jnp.asarray(A, dtype=jnp.result_type(float))
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=A.dtype))
    return _hb_log_flow(A, jnp.asarray(theta0, A.dtype), ts, eta, beta, lam)


@jax.jit
def _hb_log_flow(A, theta0, ts, eta, beta, lam):
    mu, U = decayed_spectrum(A, lam)
    c0 = U.T @ theta0
    n = (ts / eta)[:, None]  # t / eta
    a = as_complex(1 + beta - eta * mu)[None, :]
    disc = jnp.sqrt(a * a - 4 * beta)
    r1, r2 = (a + disc) / 2, (a - disc) / 2

    def power(r):
        rs = jnp.where(r == 0, 1.0, r)
        return jnp.where(r == 0, (n == 0).astype(r.dtype), jnp.exp(n * jnp.log(rs)))

    close = jnp.abs(r1 - r2) < 1e-6 * jnp.maximum(1.0, jnp.abs(r1))
    rbar = 0.5 * (r1 + r2)
    rbar_s = jnp.where(rbar == 0, 1.0, rbar)
    deriv = jnp.where(rbar == 0, (n == 1).astype(rbar.dtype), n * power(rbar) / rbar_s)
    diff = jnp.where(close, 1.0, r1 - r2)
    divided = jnp.where(close, deriv, (power(r1) - power(r2)) / diff)
    coeff = power(r2) + divided * (a - r2 - beta)
    return (coeff * c0[None, :]) @ U.T.astype(coeff.dtype)
