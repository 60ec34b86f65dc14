r"""Symmetry, kinetic symmetry breaking and Noether charges of learning dynamics.

The theory layer of the chapter on Tanaka & Kunin (2021), *Noether's learning dynamics*. Its
objects, in the paper's order:

* **mechanics of learning**: heavy ball with learning rate :math:`\eta`, momentum :math:`\beta` and
  coupled weight decay :math:`\lambda` follows the damped Newtonian equation (their Eq. (3))

  .. math:: m\ddot q + \mu\dot q + \nabla f(q) + \lambda q = 0, \qquad
            m = \tfrac\eta2(1+\beta), \quad \mu = 1-\beta

  (:func:`damped_particle_field`, :func:`matched_velocity`), the Euler–Lagrange equation of a
  Bregman Lagrangian (:func:`bregman_field`);
* **symmetries** :math:`Q(q, s)` of the loss (:func:`translation_symmetry`,
  :func:`scale_symmetry`, :func:`rescale_symmetry`, :func:`rotation_symmetry`) and **kinetic
  symmetry breaking**, :math:`\partial_s T \ne 0` (:func:`ksb_term`);
* **Noether's learning dynamics** (NLD, their Eq. (11)) for any metric (:func:`nld_terms`) and its
  exact discrete counterparts for GD and heavy ball (:func:`gd_charge_step`,
  :func:`discrete_charges`, :func:`discrete_nld`);
* **normalization as adaptive optimization** (the norm law, the equilibrium angular update and the
  exact map to a scalar RMSProp on the sphere) lives with the other results on scale-invariant
  layers, in :mod:`dyncore.scale_invariance`.

Symbols: the paper's weight decay :math:`k` is :math:`\lambda` here (``lam``); its :math:`\lambda(t)` is a
Lagrange multiplier that no function needs. Time is :math:`t = n\eta`. Weight decay is *coupled*
(``dc.heavy_ball(eta, beta=beta, lam=lam)``) unless a docstring says otherwise. Hyper-parameters
are keyword-only.

>>> import jax.numpy as jnp
>>> rot = rotation_symmetry(jnp.array([[0.0, -1.0], [1.0, 0.0]]))
>>> float(symmetry_residual(lambda q: jnp.sum(q**2) ** 2, rot, jnp.array([0.3, -1.2])))   # rotation-invariant
0.0
>>> m, mu = mass_damping(eta=0.1, beta=0.9)          # m = eta (1 + beta) / 2, mu = 1 - beta
>>> round(float(m), 6), round(float(mu), 6)
(0.095, 0.1)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .trees import tmap, vdot
from .validation import check_hparams, is_concrete

__all__ = [
    "Symmetry",
    "translation_symmetry",
    "scale_symmetry",
    "rescale_symmetry",
    "rotation_symmetry",
    "symmetry_residual",
    "euclidean_kinetic",
    "bregman_kinetic",
    "ksb_term",
    "bregman_momentum",
    "noether_charge",
    "NLDTerms",
    "nld_terms",
    "bregman_field",
    "mass_damping",
    "damped_particle_field",
    "momentum_flow_field",
    "matched_velocity",
    "gd_charge_step",
    "DiscreteCharges",
    "discrete_charges",
    "discrete_nld",
    "charge_rate",
    "TranslationRates",
    "translation_rates",
]

Params = Any
Loss = Callable[[Params], jax.Array]
Field = Callable[[Params], Params]

_tmap = tmap


def _s0() -> tuple[jax.Array, jax.Array]:
    """The identity element s = 0 and the tangent 1, in the default float dtype."""
    dtype = jnp.result_type(float)
    return jnp.zeros((), dtype), jnp.ones((), dtype)


# ---------------------------------------------------------------------------------------- symmetries
class Symmetry(NamedTuple):
    """A one-parameter family of maps :math:`q \\mapsto Q(q, s)` with :math:`Q(q, 0) = q`.

    A loss has the symmetry when :math:`f(Q(q, s)) = f(q)` for all :math:`s` (Tanaka & Kunin 2021,
    Sec. 2.1). Build one with :func:`translation_symmetry`, :func:`scale_symmetry`,
    :func:`rescale_symmetry` or :func:`rotation_symmetry`.

    Attributes:
      name: ``"translation"``, ``"scale"``, ``"rescale"`` or ``"rotation"``.
      transform: :math:`Q(q, s)`, differentiable in both arguments.
      conserved: the quantity that gradient flow without weight decay conserves when the loss has
        the symmetry (Kunin et al. 2021): :math:`\\langle q, n\\rangle` (translation),
        :math:`\\|q\\|^2` (scale), :math:`\\|q_+\\|^2 - \\|q_-\\|^2` (rescale); ``None`` for rotation.
    """

    name: str
    transform: Callable[[Params, jax.Array], Params]
    conserved: Callable[[Params], jax.Array] | None

    def generator(self, q: Params) -> Params:
        """The infinitesimal generator :math:`\\xi(q) = \\partial_s Q(q, s)|_{s=0}` (one ``jax.jvp``)."""
        s0, one = _s0()
        return jax.jvp(lambda s: self.transform(q, s), (s0,), (one,))[1]


def translation_symmetry(direction: Params) -> Symmetry:
    """Translation :math:`Q(q, s) = q + s\\,n`; generator :math:`n`, conserved :math:`\\langle q, n\\rangle`.

    Parameters just before a softmax have it along :math:`n = (1, \\ldots, 1)`: adding a constant to
    every logit changes nothing.

    Args:
      direction: the direction :math:`n` (a pytree shaped like the parameters).
    """
    n = _tmap(jnp.asarray, direction)
    return Symmetry(
        "translation",
        lambda q, s: _tmap(lambda x, d: x + s * d, q, n),
        lambda q: vdot(q, n),
    )


def scale_symmetry() -> Symmetry:
    """Scale :math:`Q(q, s) = (1+s)\\,q`; generator :math:`q`, conserved :math:`\\|q\\|^2`.

    Filters followed by a normalization layer (batch, layer or group norm) have it.
    """
    return Symmetry("scale", lambda q, s: _tmap(lambda x: (1 + s) * x, q), lambda q: vdot(q, q))


def rescale_symmetry(signs: Params) -> Symmetry:
    """Rescale :math:`Q(q, s) = \\big((1+s)\\,q_+,\\; q_-/(1+s)\\big)`; generator :math:`S q`.

    Here :math:`S = \\mathrm{diag}(\\text{signs})` with entries :math:`\\pm 1` marks the incoming
    (:math:`q_+`) and outgoing (:math:`q_-`) weights of a homogeneous unit (ReLU, linear), and the
    conserved quantity is :math:`\\langle q, S q\\rangle = \\|q_+\\|^2 - \\|q_-\\|^2` (Kunin et al. 2021).
    Entries ``0`` leave a coordinate out. On the bilinear model :math:`\\tfrac12(y - x q_1q_2)^2`
    use ``signs = (1, -1)``.

    Args:
      signs: a pytree of :math:`\\pm1` (or 0) entries broadcastable against the parameters.
    """
    sg = _tmap(jnp.asarray, signs)
    return Symmetry(
        "rescale",
        lambda q, s: _tmap(lambda x, e: x * (1 + s) ** e, q, sg),
        lambda q: vdot(q, _tmap(lambda x, e: e * x, q, sg)),
    )


def rotation_symmetry(A: jax.Array) -> Symmetry:
    """Rotations generated by a skew-symmetric :math:`A`; generator :math:`\\xi(q) = A q`.

    The family is the Cayley transform :math:`Q(q, s) = (I - \\tfrac s2 A)^{-1}(I + \\tfrac s2 A)\\,q`: an
    orthogonal map for every :math:`s`, equal to :math:`e^{sA}q` to second order in :math:`s` (so with the
    same generator), and much cheaper to compile than a matrix exponential. Every quantity of
    Noether's theorem depends on the map only through its generator. A rotation-invariant loss (a
    function of :math:`\\|q\\|`) has the symmetry; so does weight decay.

    Args:
      A: ``(d, d)`` skew-symmetric matrix acting on parameter vectors.

    Raises:
      ValueError: if ``A`` is not square or (when concrete) not skew-symmetric.
    """
    A = jnp.asarray(A, dtype=jnp.result_type(float))
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    if is_concrete(A) and not bool(jnp.allclose(A, -A.T)):
        raise ValueError("A must be skew-symmetric (A = -A^T) to generate rotations")
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    return Symmetry("rotation", lambda q, s: jnp.linalg.solve(eye - 0.5 * s * A, q + 0.5 * s * (A @ q)), None)


def symmetry_residual(loss: Loss, sym: Symmetry, q: Params) -> jax.Array:
    """:math:`\\frac{d}{ds} f(Q(q, s))|_{s=0} = \\langle\\nabla f(q), \\xi(q)\\rangle`, zero where the loss has the symmetry.

    One ``jax.jvp`` in :math:`s`; every loss with the symmetry gives zero at every ``q``.
    """
    s0, one = _s0()
    return jax.jvp(lambda s: loss(sym.transform(q, s)), (s0,), (one,))[1]


# ---------------------------------------------------------------------------- kinetic energies, KSB
def euclidean_kinetic(m) -> Callable[[Params, Params], jax.Array]:
    """The Euclidean kinetic energy :math:`T_E(q, \\dot q) = \\tfrac m2\\|\\dot q\\|^2`.

    Eq. (6) of Tanaka & Kunin (2021) with :math:`m = e^{-\\alpha_t}`.
    For heavy ball :math:`m = \\eta(1+\\beta)/2` (:func:`mass_damping`).
    """
    return lambda q, qdot: 0.5 * m * vdot(qdot, qdot)


def bregman_kinetic(h: Callable[[Params], jax.Array], alpha) -> Callable[[Params, Params], jax.Array]:
    """The Bregman kinetic energy (Eq. (5) of Tanaka & Kunin 2021)

    .. math:: T_h(q, \\dot q) = e^{\\alpha} D_h(q + e^{-\\alpha}\\dot q, q)
              = e^{\\alpha}\\big(h(q + e^{-\\alpha}\\dot q) - h(q) - \\langle\\nabla h(q), e^{-\\alpha}\\dot q\\rangle\\big).

    For :math:`h = \\tfrac12\\|x\\|^2` it is :func:`euclidean_kinetic` with :math:`m = e^{-\\alpha}`.

    Args:
      h: the distance-generating function (strictly convex, scalar of a pytree).
      alpha: the Bregman time function :math:`\\alpha_t` at the current time.
    """
    grad_h = jax.grad(h)

    def T(q, qdot):
        step = _tmap(lambda v: jnp.exp(-alpha) * v, qdot)
        y = _tmap(jnp.add, q, step)
        return jnp.exp(alpha) * (h(y) - h(q) - vdot(grad_h(q), step))

    return T


def ksb_term(kinetic: Callable[[Params, Params], jax.Array], sym: Symmetry, q: Params, qdot: Params) -> jax.Array:
    """Kinetic symmetry breaking :math:`\\partial_s T(Q, \\dot Q)|_{s=0}` in one autodiff line.

    The velocity moves with the Jacobian of the map, :math:`\\dot Q = \\partial_q Q(q, s)\\,\\dot q`
    (a ``jax.jvp``), and the derivative in :math:`s` is a second ``jax.jvp``. The symmetry is
    *kinetically broken* (Sec. 2.2 of Tanaka & Kunin 2021) where this is non-zero. For the
    Euclidean kinetic energy it is :math:`m\\langle\\dot q, D\\xi(q)\\,\\dot q\\rangle`: zero for
    translations (constant :math:`\\xi`) and rotations (skew :math:`D\\xi`), :math:`m\\|\\dot q\\|^2` for
    scale and :math:`m(\\|\\dot q_+\\|^2 - \\|\\dot q_-\\|^2)` for rescale.

    Args:
      kinetic: ``T(q, qdot) -> scalar`` (:func:`euclidean_kinetic`, :func:`bregman_kinetic`).
      sym: the symmetry.
      q, qdot: position and velocity.
    """
    s0, one = _s0()
    return jax.jvp(lambda s: kinetic(*jax.jvp(lambda x: sym.transform(x, s), (q,), (qdot,))), (s0,), (one,))[1]


# -------------------------------------------------------------------------------- Noether's dynamics
def bregman_momentum(h: Callable[[Params], jax.Array] | None, q: Params, qdot: Params, alpha) -> Params:
    """The Bregman momentum :math:`\\Delta_h = \\nabla h(q + e^{-\\alpha}\\dot q) - \\nabla h(q)` (Eq. (10)).

    ``h=None`` means :math:`h = \\tfrac12\\|x\\|^2`, where :math:`\\Delta = e^{-\\alpha}\\dot q = m\\dot q`.
    """
    if h is None:
        return _tmap(lambda v: jnp.exp(-alpha) * v, qdot)
    grad_h = jax.grad(h)
    y = _tmap(lambda x, v: x + jnp.exp(-alpha) * v, q, qdot)
    return _tmap(jnp.subtract, grad_h(y), grad_h(q))


def noether_charge(sym: Symmetry, q: Params, qdot: Params, *, alpha=0.0, h=None) -> jax.Array:
    """The (Bregman–)Noether charge :math:`\\langle\\Delta_h, \\xi(q)\\rangle` of Tanaka & Kunin (2021), Eq. (11).

    Euclidean (``h=None``) with :math:`e^{-\\alpha} = m`, it is :math:`m\\langle\\dot q, \\xi(q)\\rangle`, e.g.
    :math:`\\tfrac m2\\,\\partial_t\\|q\\|^2` for scale symmetry.
    """
    return vdot(bregman_momentum(h, q, qdot, alpha), sym.generator(q))


class NLDTerms(NamedTuple):
    """The terms of Noether's learning dynamics (Eq. (11) of Tanaka & Kunin 2021), from :func:`nld_terms`.

    .. math:: \\frac{d}{dt}\\underbrace{\\langle\\Delta_h, \\xi\\rangle}_{\\text{charge}}
              = -\\underbrace{\\dot\\gamma\\langle\\Delta_h, \\xi\\rangle}_{\\text{damping}}
              + \\underbrace{\\langle\\Delta_h, \\partial_s\\dot Q\\rangle}_{\\text{KSB}}
              + \\underbrace{e^{\\alpha}\\langle\\Delta_h - e^{-\\alpha}\\nabla^2h(q)\\,\\dot q, \\xi\\rangle}_{\\text{metric}}
              \\underbrace{- e^{\\alpha+\\beta_t}\\lambda\\langle q, \\xi\\rangle}_{\\text{weight decay}}

    Attributes:
      charge: :math:`\\langle\\Delta_h, \\xi\\rangle`.
      damping: :math:`\\dot\\gamma\\,\\times` charge.
      ksb: the kinetic-symmetry-breaking term.
      metric: the non-Euclidean-metric term (zero for :math:`h = \\tfrac12\\|x\\|^2`).
      weight_decay: the term from the potential :math:`\\tfrac\\lambda2\\|q\\|^2` (not in the paper's
        Eq. (11), which assumes a symmetric potential).
    """

    charge: jax.Array
    damping: jax.Array
    ksb: jax.Array
    metric: jax.Array
    weight_decay: jax.Array

    @property
    def rate(self) -> jax.Array:
        """:math:`d\\,\\text{charge}/dt` predicted by NLD: ksb + metric + weight_decay − damping."""
        return self.ksb + self.metric + self.weight_decay - self.damping


def nld_terms(
    sym: Symmetry,
    q: Params,
    qdot: Params,
    *,
    h: Callable[[Params], jax.Array] | None = None,
    alpha=0.0,
    beta_t=0.0,
    gamma_dot=0.0,
    lam=0.0,
) -> NLDTerms:
    """Evaluate every term of Noether's learning dynamics, Eq. (11) of Tanaka & Kunin (2021).

    Along a solution of the Euler–Lagrange equation of the Bregman Lagrangian
    :math:`e^{\\gamma_t}\\big(e^{\\alpha_t}D_h(q + e^{-\\alpha_t}\\dot q, q) - e^{\\alpha_t+\\beta_t}(f + \\tfrac\\lambda2\\|q\\|^2)\\big)`
    with :math:`f` invariant under ``sym``, the charge obeys ``d charge/dt = terms.rate`` exactly
    (:func:`bregman_field` integrates that equation). :math:`\\partial_s\\dot Q = D\\xi(q)\\,\\dot q` and
    :math:`\\nabla^2 h(q)\\,\\dot q` are forward-mode products; no matrix is formed.

    Args:
      sym: the symmetry of the loss.
      q, qdot: position and velocity.
      h: distance-generating function (``None``: Euclidean).
      alpha, beta_t, gamma_dot: :math:`\\alpha_t`, :math:`\\beta_t` and :math:`\\dot\\gamma_t` now. The
        heavy-ball Lagrangian (Eq. (4)) has :math:`e^{-\\alpha} = m`, :math:`e^{\\beta_t} = m`,
        :math:`\\dot\\gamma = \\mu/m`.
      lam: weight decay :math:`\\lambda` in the potential.

    Raises:
      ValueError: if ``lam < 0``.
    """
    check_hparams(lam=lam)
    delta = bregman_momentum(h, q, qdot, alpha)
    xi, dxi = jax.jvp(sym.generator, (q,), (qdot,))
    charge = vdot(delta, xi)
    if h is None:
        metric = jnp.zeros_like(charge)
    else:
        hess_qdot = jax.jvp(jax.grad(h), (q,), (qdot,))[1]
        metric = jnp.exp(alpha) * vdot(_tmap(lambda d, v: d - jnp.exp(-alpha) * v, delta, hess_qdot), xi)
    wd = -jnp.exp(alpha + beta_t) * lam * vdot(q, xi)
    return NLDTerms(charge, gamma_dot * charge, vdot(delta, dxi), metric, wd)


def bregman_field(
    loss: Loss,
    h: Callable[[Params], jax.Array],
    grad_h_inv: Callable[[Params], Params],
    *,
    alpha,
    beta_t,
    gamma_dot,
    lam=0.0,
) -> Field:
    """Euler–Lagrange vector field of the Bregman Lagrangian (Eq. (2)), constant :math:`\\alpha, \\beta_t, \\dot\\gamma`.

    In the state :math:`(q, z)` with :math:`z = \\nabla h(q + e^{-\\alpha}\\dot q)` the equation is first order:

    .. math:: \\dot q = e^{\\alpha}\\big((\\nabla h)^{-1}(z) - q\\big), \\qquad
              \\dot z = (e^{\\alpha} - \\dot\\gamma)\\big(z - \\nabla h(q)\\big) - e^{\\alpha+\\beta_t}\\big(\\nabla f(q) + \\lambda q\\big).

    With :math:`h = \\tfrac12\\|x\\|^2`, :math:`e^{-\\alpha} = e^{\\beta_t} = m` and :math:`\\dot\\gamma = \\mu/m` it is
    :math:`m\\ddot q + \\mu\\dot q + \\nabla f + \\lambda q = 0`, Eq. (3). The velocity is the first
    component of the field.

    Args:
      loss: the potential :math:`f`.
      h: the distance-generating function.
      grad_h_inv: the inverse of the mirror map :math:`\\nabla h` (e.g. ``jnp.arcsinh`` for
        :math:`h = \\sum\\cosh x_i`).
      alpha, beta_t, gamma_dot: constant Bregman time functions (``gamma_dot`` is the damping rate).
      lam: weight decay in the potential.

    Returns:
      ``field((q, z)) -> (qdot, zdot)``, ready for :func:`dyncore.integration.integrate`.
    """
    check_hparams(lam=lam)
    grad_h, grad_f = jax.grad(h), jax.grad(loss)

    def field(state):
        q, z = state
        qdot = _tmap(lambda y, x: jnp.exp(alpha) * (y - x), grad_h_inv(z), q)
        force = _tmap(lambda g, x: g + lam * x, grad_f(q), q)
        zdot = _tmap(
            lambda zz, hq, fo: (jnp.exp(alpha) - gamma_dot) * (zz - hq) - jnp.exp(alpha + beta_t) * fo,
            z,
            grad_h(q),
            force,
        )
        return qdot, zdot

    return field


# ------------------------------------------------------------------------ heavy ball as a particle
def mass_damping(*, eta, beta) -> tuple[Any, Any]:
    """Mass :math:`m = \\tfrac\\eta2(1+\\beta)` and damping :math:`\\mu = 1-\\beta` of heavy ball (Eq. (3)).

    Raises:
      ValueError: if ``eta <= 0`` or ``beta`` is not in ``[0, 1)``.
    """
    check_hparams(eta=eta, beta=beta)
    return 0.5 * eta * (1 + beta), 1 - beta


def damped_particle_field(loss: Loss, *, eta, beta, lam=0.0) -> Field:
    """Eq. (3) of Tanaka & Kunin (2021) as a first-order field on :math:`(q, v)`:

    .. math:: \\dot q = v, \\qquad \\dot v = -\\frac{\\mu v + \\nabla f(q) + \\lambda q}{m},
              \\qquad m = \\tfrac\\eta2(1+\\beta),\\ \\mu = 1-\\beta .

    It is the modified equation of heavy ball with coupled weight decay at :math:`t = n\\eta`: started at
    :math:`v(0) =` :func:`matched_velocity`, it tracks the iterates with global error :math:`O(\\eta^2)`.

    Raises:
      ValueError: if ``eta <= 0``, ``lam < 0`` or ``beta`` is not in ``[0, 1)``.
    """
    check_hparams(lam=lam)
    m, mu = mass_damping(eta=eta, beta=beta)
    grad = jax.grad(loss)

    def field(state):
        q, v = state
        acc = _tmap(lambda vv, g, x: -(mu * vv + g + lam * x) / m, v, grad(q), q)
        return v, acc

    return field


def momentum_flow_field(loss: Loss, *, beta, lam=0.0) -> Field:
    """The massless limit of Eq. (3), :math:`\\dot q = -(\\nabla f(q) + \\lambda q)/(1-\\beta)`: first order in :math:`\\eta`.

    Raises:
      ValueError: if ``lam < 0`` or ``beta`` is not in ``[0, 1)``.
    """
    check_hparams(beta=beta, lam=lam)
    grad = jax.grad(loss)
    return lambda q: _tmap(lambda g, x: -(g + lam * x) / (1 - beta), grad(q), q)


def matched_velocity(loss: Loss, theta0: Params, *, beta, lam=0.0) -> Params:
    """The initial velocity for which Eq. (3) tracks heavy ball started at rest to :math:`O(\\eta^2)`:

    .. math:: \\dot q(0) = -\\frac{\\nabla f(q_0) + \\lambda q_0}{1+\\beta} .

    Heavy ball from rest lags gradient flow by :math:`\\eta\\beta\\nabla f/(1-\\beta)^2`; this velocity
    reproduces the lag. Any other choice (rest, or the flow's :math:`-\\nabla f/(1-\\beta)`) leaves an
    :math:`O(\\eta)` error.
    """
    check_hparams(beta=beta, lam=lam)
    return _tmap(lambda g, x: -(g + lam * x) / (1 + beta), jax.grad(loss)(theta0), theta0)


# ------------------------------------------------------------------------------ discrete charges
def gd_charge_step(sym: Symmetry, value, grad: Params, *, eta, lam=0.0) -> jax.Array:
    """The conserved quantity after one GD step :math:`q' = q - \\eta(\\nabla f(q) + \\lambda q)`, exactly.

    For a loss with the symmetry (so :math:`\\langle\\nabla f, \\xi\\rangle = 0`):

    .. math:: \\langle q', n\\rangle = (1-\\eta\\lambda)\\langle q, n\\rangle, \\qquad
              \\langle q', Sq'\\rangle = (1-\\eta\\lambda)^2\\langle q, Sq\\rangle + \\eta^2\\langle\\nabla f, S\\nabla f\\rangle

    for translation and for scale (:math:`S = I`) / rescale. The :math:`\\eta^2` term is the discrete
    kinetic symmetry breaking: gradient flow conserves the quantity (for :math:`\\lambda = 0`), GD
    moves it by exactly this much. Iterate it (e.g. in ``lax.scan``) from ``sym.conserved(q0)``
    with the gradients of a run to predict the whole drift.

    Args:
      sym: a translation, scale or rescale symmetry.
      value: the conserved quantity at the current iterate, ``sym.conserved(q)``.
      grad: :math:`\\nabla f(q)` (without weight decay).
      eta, lam: learning rate and weight decay.

    Raises:
      ValueError: for a rotation (no conserved function of :math:`q`) or invalid ``eta``/``lam``.
    """
    check_hparams(eta=eta, lam=lam)
    if sym.conserved is None:
        raise ValueError(f"gd_charge_step needs a symmetry with a conserved quantity, got {sym.name!r}")
    if sym.name == "translation":
        return (1 - eta * lam) * value
    return (1 - eta * lam) ** 2 * value + eta**2 * sym.conserved(grad)


class DiscreteCharges(NamedTuple):
    """Discrete Noether quantities along a path :math:`q_0, \\ldots, q_N`, from :func:`discrete_charges`.

    With :math:`d_n = q_{n+1} - q_n` and the generator :math:`\\xi`, for :math:`n = 0, \\ldots, N-1`:

    Attributes:
      J: the discrete charge :math:`J_n = \\langle d_n, \\xi(q_n)\\rangle` (:math:`\\eta\\times` the
        Euclidean charge :math:`\\langle\\dot q, \\xi\\rangle`).
      K: the discrete kinetic breaking :math:`K_n = \\langle d_n, D\\xi(q_n)\\, d_n\\rangle`.
      W: the weight-decay source :math:`W_n = \\langle q_n, \\xi(q_n)\\rangle`.
    """

    J: jax.Array
    K: jax.Array
    W: jax.Array


def discrete_charges(sym: Symmetry, path: Params) -> DiscreteCharges:
    """Evaluate :math:`J_n, K_n, W_n` of :class:`DiscreteCharges` along ``path`` (iterates stacked on axis 0).

    Feed ``dc.run(...).params`` and check :func:`discrete_nld`.
    """
    q = _tmap(lambda p: p[:-1], path)
    d = _tmap(lambda p: p[1:] - p[:-1], path)

    def one(qn, dn):
        xi, dxi = jax.jvp(sym.generator, (qn,), (dn,))
        return vdot(dn, xi), vdot(dn, dxi), vdot(qn, xi)

    return DiscreteCharges(*jax.vmap(one)(q, d))


def discrete_nld(J_prev, K_prev, W, *, eta, beta, lam=0.0):
    """Noether's learning dynamics of heavy ball, exactly, one step (an affine generator :math:`\\xi`):

    .. math:: J_n = \\beta\\,(J_{n-1} + K_{n-1}) - \\eta\\lambda\\, W_n .

    Damping is the factor :math:`\\beta` per step, the source is the discrete kinetic term
    :math:`K_{n-1}` (zero for translation and rotation) and :math:`W_n` enters through coupled weight
    decay. Heavy ball from rest has :math:`J_{-1} = K_{-1} = 0`. Derivation: dot
    :math:`d_n = \\beta d_{n-1} - \\eta(\\nabla f(q_n) + \\lambda q_n)` with :math:`\\xi(q_n)` and use
    :math:`\\langle\\nabla f, \\xi\\rangle = 0` and :math:`\\xi(q_n) = \\xi(q_{n-1}) + D\\xi\\, d_{n-1}`. For
    rotations :math:`J_n = \\beta J_{n-1}`: the discrete charge decays by exactly :math:`\\beta`,
    where Eq. (12) predicts :math:`e^{-\\mu\\eta/m} = e^{-2(1-\\beta)/(1+\\beta)}`.

    Args:
      J_prev, K_prev: :math:`J_{n-1}, K_{n-1}` (arrays broadcast together).
      W: :math:`W_n`.
      eta, beta, lam: the heavy-ball hyper-parameters (coupled weight decay).

    Returns:
      The predicted :math:`J_n`.
    """
    check_hparams(eta=eta, beta=beta, lam=lam)
    return beta * (J_prev + K_prev) - eta * lam * W


def charge_rate(sym: Symmetry, q: Params, grad: Params, *, eta, beta=0.0, lam=0.0) -> jax.Array:
    """Leading-order NLD for the conserved quantity :math:`I` of ``sym``, per unit time :math:`t = n\\eta`:

    .. math:: \\dot I \\approx -\\frac{2\\lambda}{\\mu} I + \\frac{2m}{\\mu^3}\\langle\\nabla f, S\\nabla f\\rangle
              \\ \\text{(scale, rescale)}, \\qquad \\dot I \\approx -\\frac{\\lambda}{\\mu} I \\ \\text{(translation)}.

    It follows from the exact identity :math:`m\\ddot I + \\mu\\dot I = 2m\\langle\\dot q, S\\dot q\\rangle - 2\\lambda I`
    (dot Eq. (3) with :math:`Sq`) with the quasi-static velocity :math:`\\dot q \\approx -\\nabla f/\\mu` and
    :math:`m\\ddot I` dropped; for :math:`\\beta = 0` it is
    :math:`\\dot I = \\eta\\langle\\nabla f, S\\nabla f\\rangle - 2\\lambda I`. The scale case with
    :math:`\\|\\nabla f(\\hat q)\\|^2 = r^2\\|\\nabla f(q)\\|^2` is Eq. (16).

    Raises:
      ValueError: for a rotation or invalid hyper-parameters.
    """
    m, mu = mass_damping(eta=eta, beta=beta)
    check_hparams(lam=lam)
    if sym.conserved is None:
        raise ValueError(f"charge_rate needs a symmetry with a conserved quantity, got {sym.name!r}")
    value = sym.conserved(q)
    if sym.name == "translation":
        return -lam * value / mu
    return -2 * lam * value / mu + 2 * m / mu**3 * sym.conserved(grad)


class TranslationRates(NamedTuple):
    """Per-step decay rates of a translation charge under heavy ball with coupled weight decay.

    Attributes:
      exact: :math:`-\\ln z_+`, :math:`z_+` the larger root of :math:`z^2 - (1+\\beta-\\eta\\lambda)z + \\beta`.
      eq3: :math:`\\eta\\times` the slow decay rate of Eq. (3), correct through :math:`(\\eta\\lambda)^2`.
      gradient_flow: :math:`\\eta\\lambda/(1-\\beta)`, correct to first order only.
    """

    exact: jax.Array
    eq3: jax.Array
    gradient_flow: jax.Array


def translation_rates(*, eta, beta, lam) -> TranslationRates:
    """Exact and modelled per-step decay rates of :math:`C_n = \\langle q_n, n\\rangle` (translation symmetry).

    Heavy ball gives :math:`C_{n+1} = (1+\\beta-\\eta\\lambda)C_n - \\beta C_{n-1}` exactly, whose slow mode
    decays by :math:`z_+` per step. Eq. (3) gives :math:`mC'' + \\mu C' + \\lambda C = 0`, slow rate
    :math:`2\\lambda/(\\mu + \\sqrt{\\mu^2 - 4m\\lambda})` per unit time. Both expand as
    :math:`x/\\mu + x^2(1+\\beta)/(2\\mu^3) + O(x^3)` with :math:`x = \\eta\\lambda`. Valid while the roots are
    real, :math:`(1+\\beta-\\eta\\lambda)^2 \\ge 4\\beta` (NaN beyond).

    Raises:
      ValueError: for invalid hyper-parameters.
    """
    m, mu = mass_damping(eta=eta, beta=beta)
    check_hparams(lam=lam)
    x = eta * lam
    b = mu + x  # w = 1 - z solves w^2 - (1 - beta + x) w + x = 0; take the small root stably
    w = 2 * x / (b + jnp.sqrt(b**2 - 4 * x))
    exact = -jnp.log1p(-w)
    eq3 = eta * 2 * lam / (mu + jnp.sqrt(mu**2 - 4 * m * lam))
    return TranslationRates(exact, eq3, x / mu)
