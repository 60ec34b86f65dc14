r"""Backward error analysis of RMSProp and Adam (Cattaneo, Klusowski & Shigida 2023).

The paper's algorithms (Definition 3.1) put :math:`\varepsilon` *inside* the square root; Adam
has both bias corrections, the paper's RMSProp has none:

.. math:: \text{Adam:}\quad \theta^{(n+1)} = \theta^{(n)} - h\,
          \frac{m^{(n+1)}/(1-\beta^{n+1})}{\sqrt{\nu^{(n+1)}/(1-\rho^{n+1}) + \varepsilon}},

with :math:`m^{(0)} = \nu^{(0)} = 0` (:func:`dyncore.optimizers.adam`, which is
``optax.adam(eta, b1=beta, b2=rho, eps=0, eps_root=eps)``; PyTorch and optax's defaults put
:math:`\varepsilon` outside the root). The book writes :math:`\eta` for the paper's step size
:math:`h`, so a piece of the modified flow is the interval :math:`[n\eta, (n+1)\eta]`.

Theorems 3.3 and 3.6 give a **piecewise** modified ODE: on piece :math:`n` the vector field
depends on :math:`n` through the optimizer's memory, and its solution stays within
:math:`C\eta^2` of the iterates up to a fixed time, where the plain limit flow
:math:`\dot\theta_j = -g_j/R_j` (:math:`g = \nabla E`, :math:`R_j = \sqrt{g_j^2+\varepsilon}`) is
only :math:`O(\eta)` away. In the full-batch case the first-order term is a multiple of the
gradient of the *perturbed one-norm*

.. math:: N(\theta) = \|\nabla E(\theta)\|_{1,\varepsilon} = \sum_j \sqrt{(\nabla_j E)^2 + \varepsilon},
          \qquad \nabla N = \nabla^2 E\,(g/R) .

**Correction.** The second fraction of Eqs. (4) and (6) is printed with the denominator
:math:`2R^3`; the correct denominator is :math:`2R` (dimensional analysis, the paper's own
Remarks 3.4/3.7 and Eq. (8), and the order of convergence: the printed field is only
:math:`O(\eta)`). Every field here uses the corrected form; ``as_printed=True`` reproduces the
typo for demonstration.

A *piecewise field* is a function ``field(theta, n)`` giving :math:`\dot\theta` on piece
:math:`n`; :func:`dyncore.integration.integrate_pieces` and :func:`tracking_errors` integrate it piece by piece.
Extensions beyond the paper, labelled as such: the AdamW weight-decay correction
(:func:`adamw_field`) and :math:`\varepsilon` outside the root (:func:`adam_field_eps_outside`).

>>> round(float(drift_factor(0.9)), 6), round(float(drift_constant(beta=0.9, rho=0.999)), 6)   # 19, 1999 - 19
(19.0, 1980.0)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from .curvature import hvp
from .integration import rk4_piece
from .trees import norm, tmap, tsum
from .validation import check_hparams, check_positive_int, is_concrete

__all__ = [
    "ema_lag",
    "drift_factor",
    "drift_constant",
    "one_norm_weight",
    "penalises",
    "sign_threshold",
    "perturbed_one_norm",
    "one_norm_grad",
    "plain_field",
    "adam_field",
    "rmsprop_field",
    "minibatch_field",
    "adamw_field",
    "adam_field_eps_outside",
    "Tracking",
    "tracking_errors",
    "last_iterate",
    "step_residual",
]

Params = Any
Loss = Callable[[Params], jax.Array]
PieceField = Callable[[Params, jax.Array], Params]

_tmap = tmap


def _check_decay(name: str, value: Any) -> None:
    """Validate a decay rate (``beta``, ``rho`` or a generic ``b``) in [0, 1)."""
    try:
        check_hparams(beta=value)
    except ValueError as err:
        raise ValueError(str(err).replace("beta", name, 1)) from None


# ----------------------------------------------------------------------------- coefficients
def ema_lag(b, n) -> jax.Array:
    r"""Mean lag (in steps) of a bias-corrected exponential moving average, :math:`c_b(n)`.

    .. math:: c_b(n) = \frac{1}{1-b^{n+1}}\sum_{k=0}^{n} b^{n-k}(1-b)\,(n-k)
              = \frac{b}{1-b} - \frac{(n+1)\,b^{n+1}}{1-b^{n+1}} .

    It is the coefficient of Remark 3.7 of Cattaneo et al. (2023):
    :math:`L^{(n)} = c_\beta(n)\nabla N` and :math:`P^{(n)} = c_\rho(n)\,g\,\nabla N` in the
    full-batch case. :math:`c_b(0) = 0`, and :math:`c_b(n)` increases to :math:`b/(1-b)`, so
    :math:`2c_b(n) + 1 \to (1+b)/(1-b)` (:func:`drift_factor`).

    Args:
      b: decay rate in ``[0, 1)`` (may be traced).
      n: step index ``n >= 0`` (integer, array or traced).

    Returns:
      :math:`c_b(n)`, broadcast over ``b`` and ``n``.

    Raises:
      ValueError: if ``b`` is outside ``[0, 1)`` or ``n < 0`` (when concrete).
    """
    _check_decay("b", b)
    if is_concrete(n) and np.any(np.asarray(n) < 0):
        raise ValueError(f"n must be >= 0, got {np.min(np.asarray(n))}")
    b = jnp.asarray(b, dtype=jnp.result_type(float))
    n = jnp.asarray(n)
    bn1 = b ** (n + 1)
    return b / (1 - b) - (n + 1) * bn1 / (1 - bn1)


def drift_factor(b) -> jax.Array:
    r"""The large-:math:`n` limit :math:`\lim_n (2c_b(n)+1) = \dfrac{1+b}{1-b}`.

    Raises:
      ValueError: if ``b`` is outside ``[0, 1)``.
    """
    _check_decay("b", b)
    b = jnp.asarray(b, dtype=jnp.result_type(float))
    return (1 + b) / (1 - b)


def drift_constant(*, beta, rho) -> jax.Array:
    r"""The large-gradient drift constant :math:`K = \frac{1+\rho}{1-\rho} - \frac{1+\beta}{1-\beta}`.

    When every :math:`|g_j| \gg \sqrt\varepsilon`, Eq. (8) of Cattaneo et al. (2023) is the
    preconditioned flow of :math:`E - \tfrac{\eta K}{2}\|\nabla E\|_{1,\varepsilon}`: the implicit
    term penalises the perturbed one-norm when :math:`K < 0` (:math:`\beta > \rho`) and hinders its
    decrease when :math:`K > 0` (:math:`\rho > \beta`, the usual setting). The book's convention:
    :math:`K > 0` means "hinders".

    Raises:
      ValueError: if ``beta`` or ``rho`` is outside ``[0, 1)``.
    """
    check_hparams(beta=beta, rho=rho)
    return drift_factor(rho) - drift_factor(beta)


def one_norm_weight(g: ArrayLike, *, beta, rho, eps) -> jax.Array:
    r"""Per-component weight :math:`\kappa_j` of the one-norm in the large-:math:`n` field, Eq. (8).

    Eq. (8) reads :math:`\dot\theta_j = -\frac{1}{R_j}\big[g_j + \eta\,\kappa_j\,\nabla_j N\big]` with

    .. math:: \kappa_j = \frac{\frac{1+\beta}{1-\beta}(g_j^2+\varepsilon) - \frac{1+\rho}{1-\rho}g_j^2}
                              {2(g_j^2+\varepsilon)} .

    :math:`\kappa_j > 0` penalises :math:`N` in component :math:`j`, :math:`\kappa_j < 0` hinders its
    decrease. Limits: :math:`-K/2` for :math:`|g_j| \gg \sqrt\varepsilon`, and
    :math:`\tfrac12\frac{1+\beta}{1-\beta}` for :math:`|g_j| \ll \sqrt\varepsilon`.

    Args:
      g: gradient components (any shape).
      beta, rho, eps: Adam's hyper-parameters (RMSProp: ``beta = 0``).

    Raises:
      ValueError: for hyper-parameters outside their ranges.
    """
    check_hparams(beta=beta, rho=rho, eps=eps)
    g2 = jnp.asarray(g) ** 2
    return (drift_factor(beta) * (g2 + eps) - drift_factor(rho) * g2) / (2 * (g2 + eps))


def penalises(g: ArrayLike, *, beta, rho, eps) -> jax.Array:
    r"""Whether the implicit term penalises the one-norm in each component (:math:`\kappa_j > 0`).

    .. math:: (\rho - \beta)\,g_j^2 < \tfrac12 (1+\beta)(1-\rho)\,\varepsilon ,

    which follows from :math:`\frac{1+\rho}{1-\rho} - \frac{1+\beta}{1-\beta} =
    \frac{2(\rho-\beta)}{(1-\rho)(1-\beta)}`. It always holds when :math:`\beta \ge \rho` (strictly,
    when :math:`\beta > \rho`, or :math:`\beta = \rho` and :math:`\varepsilon > 0`); when
    :math:`\rho > \beta` it holds exactly for :math:`|g_j| <` :func:`sign_threshold`.

    Returns:
      A boolean array of the shape of ``g``.
    """
    check_hparams(beta=beta, rho=rho, eps=eps)
    g2 = jnp.asarray(g) ** 2
    return (rho - beta) * g2 < 0.5 * (1 + beta) * (1 - rho) * eps


def sign_threshold(*, beta, rho, eps) -> jax.Array:
    r"""Gradient size :math:`g^\ast` where the implicit term changes sign (``inf`` if :math:`\beta \ge \rho`).

    .. math:: g^\ast = \sqrt{\frac{(1+\beta)(1-\rho)\,\varepsilon}{2(\rho-\beta)}}
              \qquad (\rho > \beta);

    components with :math:`|g_j| < g^\ast` are penalised, larger ones hinder. For RMSProp
    (:math:`\beta = 0`), :math:`g^{\ast 2} = \varepsilon(1-\rho)/(2\rho)`.
    """
    check_hparams(beta=beta, rho=rho, eps=eps)
    beta, rho = jnp.asarray(beta, jnp.result_type(float)), jnp.asarray(rho, jnp.result_type(float))
    gap = rho - beta
    safe = jnp.where(gap > 0, gap, 1.0)
    return jnp.where(gap > 0, jnp.sqrt((1 + beta) * (1 - rho) * eps / (2 * safe)), jnp.inf)


# ----------------------------------------------------------------------------- the one-norm
def _sqrt_eps(g: Params, eps) -> Params:
    return _tmap(lambda x: jnp.sqrt(x**2 + eps), g)


def perturbed_one_norm(loss: Loss, *, eps) -> Loss:
    r"""The perturbed one-norm of the gradient, :math:`N(\theta) = \sum_j \sqrt{(\nabla_j E(\theta))^2 + \varepsilon}`.

    Not a norm (its floor is :math:`p\sqrt\varepsilon`, reached where :math:`\nabla E = 0`); at
    :math:`\varepsilon = 0` it is :math:`\|\nabla E\|_1`. Notation of Cattaneo et al. (2023),
    Section 1: :math:`\|v\|_{1,\varepsilon} = \sum_i\sqrt{v_i^2+\varepsilon}`.

    Args:
      loss: scalar loss :math:`E` of a pytree.
      eps: :math:`\varepsilon > 0`.

    Returns:
      The function :math:`\theta \mapsto N(\theta)`.
    """
    check_hparams(eps=eps)
    grad = jax.grad(loss)
    return lambda theta: tsum(_sqrt_eps(grad(theta), eps))


def one_norm_grad(loss: Loss, theta: Params, *, eps) -> Params:
    r""":math:`\nabla N = \nabla^2 E\,(g/R)`, one Hessian-vector product along :math:`g/R`.

    With :math:`g = \nabla E(\theta)` and :math:`R_j = \sqrt{g_j^2+\varepsilon}`,
    :math:`\nabla_j N = \sum_i \nabla_{ij}E\, g_i/R_i`: the sum that appears in Theorems 3.3/3.6.
    It is *not* :math:`\nabla^2 E\, g` (that is :math:`\tfrac12\nabla\|\nabla E\|^2`).

    Returns:
      :math:`\nabla N(\theta)`, with the structure of ``theta``.
    """
    check_hparams(eps=eps)
    g = jax.grad(loss)(theta)
    return hvp(loss, theta, _tmap(lambda x, r: x / r, g, _sqrt_eps(g, eps)))


# ----------------------------------------------------------------------------- full-batch fields
def plain_field(loss: Loss, *, eps) -> PieceField:
    r"""The zeroth-order ("plain") flow of full-batch Adam, :math:`\dot\theta_j = -g_j/\sqrt{g_j^2+\varepsilon}`.

    A perturbed sign-gradient flow, the :math:`\eta \to 0` limit of Adam with :math:`\varepsilon`
    inside the root (read off Theorem 3.6). It tracks Adam only to :math:`O(\eta)`. Returned as a
    piecewise field ``field(theta, n)`` that ignores ``n``.
    """
    check_hparams(eps=eps)
    grad = jax.grad(loss)

    def field(theta, n=0):
        g = grad(theta)
        return _tmap(lambda x, r: -x / r, g, _sqrt_eps(g, eps))

    return field


def adam_field(
    loss: Loss, *, eta, beta, rho, eps, large_n: bool = False, as_printed: bool = False
) -> PieceField:
    r"""Full-batch modified field of Adam on piece :math:`n` (Theorem 3.6 with Remark 3.7, corrected).

    .. math:: \dot\theta_j = -\frac{g_j}{R_j}
              + \eta\,\frac{q_\rho(n)\,g_j^2 - q_\beta(n)\,R_j^2}{2R_j^3}\,\nabla_j N
              = -\frac{g_j}{R_j} + \eta\,\frac{c_\rho(n)\,g_j^2 - c_\beta(n)\,R_j^2 - \varepsilon/2}{R_j^3}\,\nabla_j N,

    with :math:`g = \nabla E(\theta)`, :math:`R_j = \sqrt{g_j^2+\varepsilon}`,
    :math:`\nabla N = \nabla^2E\,(g/R)` (:func:`one_norm_grad`), :math:`c_b(n)` = :func:`ema_lag` and
    :math:`q_b(n) = 2c_b(n) + 1`. ``large_n=True`` replaces :math:`q_b(n)` by :math:`(1+b)/(1-b)`:
    Eq. (8), autonomous; for bias-corrected Adam it still tracks the iterates to :math:`O(\eta^2)`.

    Args:
      loss: full-batch loss :math:`E`.
      eta: step size :math:`\eta` (the paper's :math:`h`).
      beta: first-moment decay :math:`\beta` (``0``: no momentum).
      rho: second-moment decay :math:`\rho`.
      eps: :math:`\varepsilon > 0`, inside the root.
      large_n: use the autonomous large-:math:`n` form (8).
      as_printed: use the paper's printed (wrong) denominator :math:`2R^3` in the
        :math:`L`-term, i.e. replace :math:`q_\beta R_j^2` by :math:`q_\beta`. Only to show that the
        misprint degrades the tracking error to :math:`O(\eta)`.

    Returns:
      A piecewise field ``field(theta, n)``.

    Raises:
      ValueError: for hyper-parameters outside their ranges.
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps)
    grad = jax.grad(loss)

    def field(theta, n=0):
        g = grad(theta)
        R = _sqrt_eps(g, eps)
        dN = hvp(loss, theta, _tmap(lambda x, r: x / r, g, R))
        if large_n:
            qb, qr = drift_factor(beta), drift_factor(rho)
        else:
            qb, qr = 2 * ema_lag(beta, n) + 1, 2 * ema_lag(rho, n) + 1

        def comp(x, r, d):
            r2 = 1.0 if as_printed else r**2
            return -x / r + eta * (qr * x**2 - qb * r2) / (2 * r**3) * d

        return _tmap(comp, g, R, dN)

    return field


def minibatch_field(
    losses: Sequence[Loss],
    batches: ArrayLike,
    *,
    eta,
    beta,
    rho,
    eps,
    bias_correction: bool = True,
    order: int = 1,
) -> PieceField:
    r"""Modified field of mini-batch Adam or RMSProp on piece :math:`n` (Theorems 3.6 and 3.3, corrected).

    Step :math:`k` uses the loss :math:`E_k` = ``losses[batches[k]]``. With every history term
    evaluated at the *current* point :math:`\theta`,

    .. math:: \dot\theta_j = -\frac{M_j^{(n)}}{R_j^{(n)}} + \eta\Big(
              \frac{M_j^{(n)}\,(2P_j^{(n)} + \bar P_j^{(n)})}{2 (R_j^{(n)})^3}
              - \frac{2L_j^{(n)} + \bar L_j^{(n)}}{2R_j^{(n)}}\Big),

    where :math:`M^{(l)}` and :math:`(R^{(l)})^2 - \varepsilon` are the (bias-corrected) moving
    averages of :math:`\nabla E_k` and :math:`(\nabla E_k)^2` over :math:`k \le l`, and with
    :math:`D_k = \sum_{l=k}^{n-1} M^{(l)}/R^{(l)}`, :math:`a_k = \beta^{n-k}(1-\beta)/(1-\beta^{n+1})`,
    :math:`b_k = \rho^{n-k}(1-\rho)/(1-\rho^{n+1})`:

    .. math:: 2L^{(n)} + \bar L^{(n)} = \sum_{k\le n} a_k\,\nabla^2E_k\,(2D_k + M^{(n)}/R^{(n)}),\qquad
              (2P^{(n)} + \bar P^{(n)})_j = \sum_{k\le n} b_k\,\nabla_jE_k\,\big(\nabla^2E_k(2D_k + M^{(n)}/R^{(n)})\big)_j .

    The paper prints the :math:`L`-fraction over :math:`2(R^{(n)})^3`; the correct :math:`2R^{(n)}` is
    used here. ``bias_correction=False`` drops the factors :math:`1/(1-b^{n+1})`; with ``beta=0``
    this is the paper's RMSProp (Theorem 3.3). The theorem is pathwise: it holds for the given
    batch sequence, with no average over orderings.

    Implementation: grouping the sums by batch costs :math:`2m` Hessian-vector products and
    :math:`O(n_{\max} m p)` work per evaluation (``m`` losses, ``p`` parameters), with arrays of the
    static length :math:`n_{\max}` = ``len(batches)`` masked beyond :math:`n`, so ``n`` may be traced.

    Args:
      losses: the ``m`` mini-batch losses :math:`E^{[b]}` (pytree functions).
      batches: integer sequence, ``batches[k]`` the loss used at step ``k``; its length bounds the
        number of pieces (``n < len(batches)``).
      eta, beta, rho, eps: hyper-parameters (RMSProp: ``beta=0, bias_correction=False``).
      bias_correction: Adam's bias corrections (both moments) or none.
      order: ``1`` for the modified field, ``0`` for the zeroth-order field
        :math:`-M^{(n)}/R^{(n)}` (which still depends on ``n``).

    Returns:
      A piecewise field ``field(theta, n)``. A concrete ``n`` outside ``[0, len(batches))`` raises
      ``ValueError``; a traced one gives NaN there (so an integrator reports it as diverged),
      never the field of the last piece.

    Raises:
      ValueError: for bad hyper-parameters, an empty ``losses``, ``batches`` out of range, or
        ``order`` not in ``{0, 1}``.
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps)
    losses = tuple(losses)
    m = len(losses)
    if m == 0:
        raise ValueError("losses must contain at least one loss")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    idx = np.asarray(batches)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"batches must be a non-empty 1-D integer sequence, got {batches!r}")
    if idx.min() < 0 or idx.max() >= m:
        raise ValueError(f"batches must index losses, i.e. lie in [0, {m - 1}], got {idx.min()}..{idx.max()}")
    n_max = idx.size
    onehot = jax.nn.one_hot(jnp.asarray(idx), m, dtype=jnp.result_type(float))
    steps = jnp.arange(n_max)

    def ema_weights(b):
        def step(w, x):
            w = b * w + (1 - b) * x
            return w, w

        _, W = jax.lax.scan(step, jnp.zeros(m, onehot.dtype), onehot)
        return W / (1 - b ** (steps + 1))[:, None] if bias_correction else W

    Wb, Wr = ema_weights(beta), ema_weights(rho)  # (n_max, m): M^(l) = Wb[l] @ G, R^(l)^2 = Wr[l] @ G^2 + eps

    def weights(b, n):
        w = jnp.where(steps <= n, b ** jnp.maximum(n - steps, 0) * (1 - b), 0.0)
        w = w / (1 - b ** (n + 1)) if bias_correction else w
        return (w[:, None] * onehot).T  # (m, n_max), grouped by batch

    def field(theta, n):
        if is_concrete(n) and not 0 <= int(n) < n_max:
            raise ValueError(f"n must be in [0, {n_max - 1}] (one piece per entry of batches), got {n}")
        x, unravel = ravel_pytree(theta)
        flat = [lambda y, f=f: f(unravel(y)) for f in losses]
        G = jnp.stack([jax.grad(f)(x) for f in flat])
        M = Wb @ G
        R = jnp.sqrt(Wr @ G**2 + eps)
        Mn, Rn = M[n], R[n]  # a traced n beyond the pieces would clamp: marked NaN below
        valid = (n >= 0) & (n < n_max)
        f0 = -Mn / Rn
        if order == 0:
            return unravel(jnp.where(valid, f0, jnp.nan))
        Q = M / R
        Qm = jnp.where((steps < n)[:, None], Q, 0.0)
        D2 = 2 * jnp.cumsum(Qm[::-1], axis=0)[::-1]  # 2 D_k
        A, B = weights(beta, n), weights(rho, n)
        V = A @ D2 + A.sum(1)[:, None] * (Mn / Rn)
        U = B @ D2 + B.sum(1)[:, None] * (Mn / Rn)
        hv = jnp.stack([hvp(f, x, v) for f, v in zip(flat, V)])
        hu = jnp.stack([hvp(f, x, u) for f, u in zip(flat, U)])
        twoL = hv.sum(0)
        twoP = (G * hu).sum(0)
        out = f0 + eta * (Mn * twoP / (2 * Rn**3) - twoL / (2 * Rn))
        return unravel(jnp.where(valid, out, jnp.nan))

    return field


def rmsprop_field(
    loss: Loss, *, eta, rho, eps, n_max: int, order: int = 1, large_n: bool = False
) -> PieceField:
    r"""Full-batch modified field of the paper's RMSProp (no bias correction) on piece :math:`n` (Theorem 3.3, Remark 3.4).

    .. math:: \dot\theta_j = -\frac{g_j}{R_j^{(n)}} + \eta\Big(\frac{g_j(2P_j^{(n)} + \bar P_j^{(n)})}{2(R_j^{(n)})^3}
              - \frac{\sum_i \nabla_{ij}E\, g_i/R_i^{(n)}}{2R_j^{(n)}}\Big),\qquad
              R_j^{(n)} = \sqrt{g_j^2(1-\rho^{n+1}) + \varepsilon},

    with :math:`P, \bar P` of Remark 3.4 (denominator of the last fraction corrected from
    :math:`2R^3` to :math:`2R`). Without bias correction even the zeroth-order term depends on
    :math:`n`, and :math:`P^{(n)}` involves :math:`R^{(l)}` for all :math:`l < n`: this is
    :func:`minibatch_field` with one loss, ``beta=0`` and ``bias_correction=False``, so ``n_max``
    (the number of pieces) is static. ``large_n=True`` returns instead the autonomous large-n form
    (Eq. (8) at :math:`\beta = 0`), which for RMSProp only tracks the iterates to :math:`O(\eta)`.

    Raises:
      ValueError: for bad hyper-parameters, ``n_max < 1`` or ``order`` not in ``{0, 1}``.
    """
    n_max = check_positive_int("n_max", n_max)
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    if large_n:
        if order == 0:
            return plain_field(loss, eps=eps)
        return adam_field(loss, eta=eta, beta=0.0, rho=rho, eps=eps, large_n=True)
    return minibatch_field(
        [loss], np.zeros(n_max, dtype=int), eta=eta, beta=0.0, rho=rho, eps=eps, bias_correction=False, order=order
    )


# ----------------------------------------------------------------------------- extensions (beyond the paper)
def adamw_field(
    loss: Loss, *, eta, beta, rho, eps, lam, decay_correction: bool = True, order: int = 1
) -> PieceField:
    r"""Full-batch modified field of AdamW (:func:`dyncore.optimizers.adamw`) on piece :math:`n`: an extension, not in the paper.

    Re-deriving Theorem 3.6 with the history velocity :math:`Q = g/R + \lambda\theta` gives

    .. math:: \dot\theta_j = -Q_j + \eta\Big[\frac{q_\rho(n)\,g_j^2 - q_\beta(n)\,R_j^2}{2R_j^3}\,(\nabla^2E\,Q)_j
              - \frac\lambda2\,Q_j\Big].

    At :math:`\lambda = 0` this is :func:`adam_field`; at :math:`E \equiv 0` it is
    :math:`-\lambda\theta - \tfrac{\eta\lambda^2}{2}\theta`, the modified flow of GD on
    :math:`\tfrac\lambda2\|\theta\|^2`. ``decay_correction=False`` drops the
    :math:`-\tfrac\lambda2 Q` term (which costs the second order); ``order=0`` returns the
    zeroth-order flow :math:`\dot\theta = -Q`.

    Raises:
      ValueError: for hyper-parameters outside their ranges, or ``order`` not in ``{0, 1}``.
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps, lam=lam)
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    grad = jax.grad(loss)

    def field(theta, n=0):
        g = grad(theta)
        R = _sqrt_eps(g, eps)
        Q = _tmap(lambda x, r, t: x / r + lam * t, g, R, theta)
        if order == 0:
            return _tmap(jnp.negative, Q)
        HQ = hvp(loss, theta, Q)
        qb, qr = 2 * ema_lag(beta, n) + 1, 2 * ema_lag(rho, n) + 1
        c = 0.5 * lam if decay_correction else 0.0

        def comp(x, r, q, hq):
            return -q + eta * ((qr * x**2 - qb * r**2) / (2 * r**3) * hq - c * q)

        return _tmap(comp, g, R, Q, HQ)

    return field


def adam_field_eps_outside(loss: Loss, *, eta, beta, rho, eps) -> PieceField:
    r"""Full-batch modified field of Adam with :math:`\varepsilon` *outside* the root: an extension, not in the paper.

    For the optax/PyTorch step :math:`\eta\,\hat m/(\sqrt{\hat\nu} + \varepsilon)`, valid while no
    gradient component changes sign: with :math:`D_j = |g_j| + \varepsilon` and
    :math:`\nabla N_{\mathrm{out}} = \nabla^2 E\,(g/D)`,

    .. math:: \dot\theta_j = -\frac{g_j}{D_j} + \eta\,\frac{(\nabla N_{\mathrm{out}})_j}{D_j^2}
              \Big[c_\rho(n)|g_j| - c_\beta(n) D_j - \frac\varepsilon2\Big].
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps)
    grad = jax.grad(loss)

    def field(theta, n=0):
        g = grad(theta)
        D = _tmap(lambda x: jnp.abs(x) + eps, g)
        dN = hvp(loss, theta, _tmap(lambda x, d: x / d, g, D))
        cb, cr = ema_lag(beta, n), ema_lag(rho, n)

        def comp(x, d, dn):
            return -x / d + eta * dn / d**2 * (cr * jnp.abs(x) - cb * d - 0.5 * eps)

        return _tmap(comp, g, D, dN)

    return field


# ----------------------------------------------------------------------------- piecewise integration
def _grad_fn(loss, grad_fn):
    if (loss is None) == (grad_fn is None):
        raise ValueError("give exactly one of loss (full batch) and grad_fn(theta, n) (mini-batch)")
    if loss is not None:
        grad = jax.grad(loss)
        return lambda theta, n: grad(theta)
    return grad_fn


class Tracking(NamedTuple):
    """Result of :func:`tracking_errors`.

    Attributes:
      global_error: :math:`\\max_{n \\le N}\\|\\theta^{(n)} - \\tilde\\theta(n\\eta)\\|` (the quantity
        Theorems 3.3/3.6 bound by :math:`C\\eta^2`).
      local_error: :math:`\\max_{n < N}\\|\\theta^{(n+1)} - \\Phi^{(n)}_\\eta(\\theta^{(n)})\\|`, the
        one-piece error of the flow restarted at each iterate (``nan`` if not computed).
      iterate: the last iterate :math:`\\theta^{(N)}`.
      flow: the flow at the last time, :math:`\\tilde\\theta(N\\eta)`.
    """

    global_error: jax.Array
    local_error: jax.Array
    iterate: Params
    flow: Params


def tracking_errors(
    optimizer: optax.GradientTransformation,
    field: PieceField,
    theta0: Params,
    n_steps,
    *,
    eta,
    loss: Loss | None = None,
    grad_fn: Callable[[Params, jax.Array], Params] | None = None,
    substeps: int = 1,
    local: bool = True,
) -> Tracking:
    r"""Run an optimizer and the piecewise flow side by side; return the global and local tracking errors.

    Step :math:`n` of ``optimizer`` (built with step size ``eta``) uses the gradient of ``loss``, or
    ``grad_fn(theta, n)`` for a mini-batch sequence; the flow is integrated piece by piece as in
    :func:`dyncore.integration.integrate_pieces`. The loop is a ``lax.fori_loop``, so ``n_steps`` may be a traced
    integer: an order-of-convergence sweep over :math:`\eta` at a fixed horizon
    :math:`T = N\eta` compiles once.

    Args:
      optimizer: an optax transformation, e.g. :func:`dyncore.optimizers.adam`.
      field: the piecewise field to compare with.
      theta0: common start.
      eta: the optimizer's step size, also the length of a piece.
      n_steps: number of steps :math:`N` (may be traced).
      loss: full-batch loss (or give ``grad_fn``).
      grad_fn: ``grad_fn(theta, n)``, the gradient used at step ``n``.
      substeps: RK4 steps per piece.
      local: also compute the local error (one more piece integration per step).

    Returns:
      A :class:`Tracking`.

    Raises:
      ValueError: if not exactly one of ``loss`` and ``grad_fn`` is given, or for bad arguments.
    """
    check_hparams(eta=eta)
    substeps = check_positive_int("substeps", substeps)
    if is_concrete(n_steps):
        check_positive_int("n_steps", int(n_steps))
    grad = _grad_fn(loss, grad_fn)

    def body(n, carry):
        theta, state, y, gmax, lmax = carry
        updates, state = optimizer.update(grad(theta, n), state, theta)
        new = optax.apply_updates(theta, updates)
        if local:
            lmax = jnp.maximum(lmax, norm(_tmap(jnp.subtract, new, rk4_piece(field, theta, n, eta=eta, substeps=substeps))))
        y = rk4_piece(field, y, n, eta=eta, substeps=substeps)
        gmax = jnp.maximum(gmax, norm(_tmap(jnp.subtract, new, y)))
        return new, state, y, gmax, lmax

    zero = jnp.zeros((), jnp.result_type(float))
    init = (theta0, optimizer.init(theta0), theta0, zero, zero if local else jnp.full((), jnp.nan))
    theta, _, y, gmax, lmax = jax.lax.fori_loop(0, n_steps, body, init)
    return Tracking(gmax, lmax, theta, y)


def last_iterate(
    optimizer: optax.GradientTransformation,
    theta0: Params,
    n_steps,
    *,
    loss: Loss | None = None,
    grad_fn: Callable[[Params, jax.Array], Params] | None = None,
) -> Params:
    r"""The iterate :math:`\theta^{(N)}` after ``n_steps`` steps, with a possibly traced ``n_steps``.

    A ``lax.fori_loop`` version of :func:`dyncore.runner.run` that keeps only the last
    iterate, so that a sweep over step sizes at a fixed horizon compiles once.

    Raises:
      ValueError: if not exactly one of ``loss`` and ``grad_fn`` is given.
    """
    grad = _grad_fn(loss, grad_fn)

    def body(n, carry):
        theta, state = carry
        updates, state = optimizer.update(grad(theta, n), state, theta)
        return optax.apply_updates(theta, updates), state

    return jax.lax.fori_loop(0, n_steps, body, (theta0, optimizer.init(theta0)))[0]


def step_residual(path: Params, field0: PieceField, *, eta) -> Params:
    r"""Per-step residual of iterates against the zeroth-order flow, which should equal the first-order term.

    .. math:: r_n = \frac{\theta^{(n+1)} - \theta^{(n)} - \eta f_0 - \tfrac{\eta^2}{2}(Df_0)f_0}{\eta^2}
              \Big|_{\theta^{(n)}},

    with :math:`f_0` = ``field0(., n)`` and :math:`(Df_0)f_0` one forward-mode JVP. If the
    modified field is :math:`f_0 + \eta f_1^{(n)}`, then :math:`r_n = f_1^{(n)}(\theta^{(n)}) + O(\eta)`:
    the first-order term read off the iterates alone.

    Args:
      path: iterates :math:`\theta^{(0..N)}` stacked on a leading axis (e.g.
        ``dyncore.run(...).params``).
      eta: step size.
      field0: the zeroth-order piecewise field.

    Returns:
      :math:`r_0, \ldots, r_{N-1}`, stacked.
    """
    check_hparams(eta=eta)
    now = _tmap(lambda a: a[:-1], path)
    nxt = _tmap(lambda a: a[1:], path)
    count = jax.tree_util.tree_leaves(now)[0].shape[0]

    def one(th, th1, n):
        f = lambda t: field0(t, n)  # noqa: E731
        v, dv = jax.jvp(f, (th,), (f(th),))
        return _tmap(lambda a, b, c, d: (b - a - eta * c - 0.5 * eta**2 * d) / eta**2, th, th1, v, dv)

    return jax.vmap(one)(now, nxt, jnp.arange(count))
