r"""Scale-invariant layers under GD and SGD with weight decay: norms, angular updates, clocks.

A layer :math:`\mathcal A` is scale-invariant when :math:`f(\alpha\theta_{\mathcal A} + \theta_{\mathcal A^c}) = f(\theta)`
for :math:`\alpha > 0` (a layer followed by a normalisation). Then :math:`\theta_{\mathcal A}\perp\nabla_{\mathcal A} f`
and :math:`\|\nabla_{\mathcal A} f\|` scales like :math:`1/r`, :math:`r = \|\theta_{\mathcal A}\|`, so GD's step is exactly

.. math:: r_{k+1}^2 = (1-\eta\lambda)^2 r_k^2 + \eta^2 \frac{c_k^2}{r_k^2}, \qquad
          \cos\Delta_k = (1-\eta\lambda)\,\frac{r_k}{r_{k+1}},

with :math:`c_k` the gradient norm at unit radius and :math:`\Delta_k` the angle between consecutive
iterates. Three papers of the book describe what follows, and their results live here together:

* **equilibria and norm flows** (Miyagawa 2022, Sec. 5): :func:`norm_equilibrium` (exact for GD and
  heavy ball, and as the continuous models predict), :func:`norm_flow`, :func:`angular_update`;
* **normalization as adaptive optimization** (Tanaka & Kunin 2021): the norm law along a run
  (:func:`norm_law`, :func:`coherence`), the equilibrium angle and norm (:func:`equilibrium_angle`,
  :func:`equilibrium_norm4`), the exact map to a scalar RMSProp on the sphere
  (:func:`rmsprop_mapping`, :func:`sphere_rmsprop`) and the rescaled initialisation
  (:func:`rescaled_hparams`);
* **the SDE's norm and clock** (Li, Wang & Yu 2022): :func:`sde_norm4`, :func:`clock`,
  :func:`clock_inverse`.

Hyper-parameters are keyword-only. Momentum enters the leading-order formulas only through
:math:`\eta/(1-\beta)` unless a docstring says otherwise.

>>> eq = norm_equilibrium(eta=0.1, lam=0.1)        # GD on the angle toy, c = 1
>>> round(float(eq.r4), 6), round(float(eq.cos_delta), 6)   # eta/(2 lam - eta lam^2), 1 - eta lam
(0.502513, 0.99)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from .optimizers import rmsprop_on_sphere
from .runner import Observer, run
from .trees import as_float
from .validation import check_hparams, check_positive, check_positive_int, is_concrete

__all__ = [
    "angular_update",
    "NormEquilibrium",
    "norm_equilibrium",
    "norm_flow",
    "equilibrium_angle",
    "equilibrium_norm4",
    "norm_law",
    "coherence",
    "RMSPropNorm",
    "rmsprop_mapping",
    "SphereRun",
    "sphere_rmsprop",
    "rescaled_hparams",
    "sde_norm4",
    "clock",
    "clock_inverse",
]

Params = Any
Loss = Callable[[Params], jax.Array]


_MODELS = ("gd", "eom", "paper", "leading")


def _safe_expm1_ratio(x):
    """(e^x − 1)/x, equal to 1 at x = 0, differentiable everywhere."""
    safe = jnp.where(x == 0, 1.0, x)
    return jnp.where(x == 0, 1.0 + x / 2, jnp.expm1(safe) / safe)


def _one_minus_exp_ratio(x):
    """(1 − e^{−x})/x, equal to 1 at x = 0."""
    safe = jnp.where(x == 0, 1.0, x)
    return jnp.where(x == 0, 1.0 - x / 2, -jnp.expm1(-safe) / safe)


def angular_update(path: ArrayLike) -> jax.Array:
    """Cosine of the angle between consecutive iterates of a layer (the angular update).

    .. math:: \\cos\\Delta_k = \\hat\\theta_k\\cdot\\hat\\theta_{k+1}, \\qquad \\hat\\theta = \\theta/\\|\\theta\\|.

    The angular update of Wan et al. (2021), used by Miyagawa (2022, Cor. 5.2).

    Args:
      path: iterates of the layer stacked on a leading axis, shape ``(n + 1, ...)`` (e.g. the
        ``params`` of a :class:`~dyncore.runner.Trajectory`, or one layer of it).

    Returns:
      ``(n,)`` array of :math:`\\cos\\Delta_k`, :math:`k = 0, \\ldots, n-1`.

    Raises:
      ValueError: if ``path`` has fewer than two iterates.
    """
    path = jnp.asarray(path)
    if path.ndim < 1 or path.shape[0] < 2:
        raise ValueError(f"path needs at least two iterates on its leading axis, got shape {path.shape}")
    flat = path.reshape(path.shape[0], -1)
    unit = flat / jnp.linalg.norm(flat, axis=1, keepdims=True)
    return jnp.sum(unit[:-1] * unit[1:], axis=1)


class NormEquilibrium(NamedTuple):
    """Equilibrium of a scale-invariant layer: :func:`norm_equilibrium`.

    Attributes:
      r4: the fourth power of the equilibrium norm, :math:`r_*^4`.
      cos_delta: the cosine of the equilibrium angular update, :math:`\\cos\\Delta_*`.
    """

    r4: jax.Array
    cos_delta: jax.Array

    @property
    def delta(self) -> jax.Array:
        """The angular update :math:`\\Delta_*` itself (radians)."""
        return jnp.arccos(self.cos_delta)


def norm_equilibrium(*, eta, beta=0.0, lam, c=1.0, model: str = "gd") -> NormEquilibrium:
    """Equilibrium norm and angular update of a scale-invariant layer, exact or as a model predicts.

    Assumes a constant tangential gradient at unit radius, :math:`\\|\\nabla_{\\mathcal A} f(\\hat\\theta)\\| = c`
    (exact for :func:`dyncore.problems.angle_toy`; the limit :math:`c_*` of Miyagawa's Cor. 5.1 otherwise).
    With :math:`x = \\eta\\lambda`:

    ``model="gd"`` (exact fixed point of GD; heavy ball with momentum :math:`\\beta`, started at rest)
      .. math:: r_*^4 = \\frac{\\eta c^2 (1+\\beta)}{(1-\\beta)^2\\,(2\\lambda - \\eta\\lambda^2/(1+\\beta))},
                \\qquad \\cos\\Delta_* = 1 - \\frac{x}{1+\\beta};

      for :math:`\\beta = 0`, :math:`r_*^4 = \\eta c^2/(2\\lambda - \\eta\\lambda^2)` and
      :math:`\\cos\\Delta_* = 1 - x`.
    ``model="eom"`` (the equation of motion with the first counter term :math:`\\tilde\\xi_0`, Eq. (16))
      :math:`r_*^4 = \\eta c^2/(2\\lambda + \\eta\\lambda^2)`; the flow turns at angular speed :math:`c/r^2`,
      so in a time :math:`\\eta` it turns by :math:`\\Delta_* = \\sqrt{2x + x^2}`.
    ``model="paper"`` (Miyagawa's Cor. 5.1 and 5.2 as printed)
      :math:`r_*^4 = \\eta c^2/(2\\lambda + \\eta\\lambda^2)`, :math:`\\cos\\Delta_* = (1-x)/(1 - x^2/2)`.
    ``model="leading"`` (van Laarhoven 2017; Wan et al. 2021)
      :math:`r_*^4 = \\eta c^2/(2\\lambda)`, :math:`\\Delta_* = \\sqrt{2x}`.

    All four agree to leading order; at relative order :math:`x` the GD norm is *larger* than the
    leading order, :math:`r_*^4 \\approx \\tfrac{\\eta c^2}{2\\lambda}(1 + x/2)`, while ``"eom"`` and
    ``"paper"`` give :math:`(1 - x/2)`; the three cosines differ at order :math:`x^2`.

    Args:
      eta: learning rate :math:`\\eta > 0`.
      lam: weight decay :math:`\\lambda > 0` (no equilibrium without it).
      c: tangential gradient norm at unit radius, :math:`c > 0`.
      model: ``"gd"``, ``"eom"``, ``"paper"`` or ``"leading"``.
      beta: heavy-ball momentum, ``model="gd"`` only.

    Returns:
      A :class:`NormEquilibrium` ``(r4, cos_delta)``.

    Raises:
      ValueError: for an invalid hyper-parameter, ``lam == 0``, ``c <= 0``, an unknown ``model``,
        or ``beta != 0`` with a model other than ``"gd"``.
    """
    check_hparams(eta=eta, lam=lam, beta=beta)
    if model not in _MODELS:
        raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
    check_positive("lam", lam, why="for an equilibrium to exist")
    check_positive("c", c)
    if model != "gd" and is_concrete(beta) and float(np.max(np.abs(np.asarray(beta, dtype=float)))) != 0:
        got = float(np.max(np.asarray(beta, dtype=float)))
        raise ValueError(f"beta is only defined for model='gd', got beta={got:g}")
    eta, lam, c, beta = (jnp.asarray(v, dtype=jnp.result_type(float)) for v in (eta, lam, c, beta))
    x = eta * lam
    if model == "gd":
        r4 = eta * c**2 * (1 + beta) / ((1 - beta) ** 2 * (2 * lam - eta * lam**2 / (1 + beta)))
        return NormEquilibrium(r4, 1 - x / (1 + beta))
    if model == "eom":
        return NormEquilibrium(eta * c**2 / (2 * lam + eta * lam**2), jnp.cos(jnp.sqrt(2 * x + x**2)))
    if model == "paper":
        return NormEquilibrium(eta * c**2 / (2 * lam + eta * lam**2), (1 - x) / (1 - x**2 / 2))
    return NormEquilibrium(eta * c**2 / (2 * lam), jnp.cos(jnp.sqrt(2 * x)))


def norm_flow(ts: ArrayLike, *, r0, eta, lam, c=1.0, order: int = 1) -> jax.Array:
    """Squared norm :math:`r^2(t)` of a scale-invariant layer under gradient flow or the first-order EoM.

    With :math:`v = r^4` and a constant tangential gradient :math:`c` at unit radius (the angle toy),
    Miyagawa's Eqs. (15)-(16) become linear in :math:`v`:

    .. math:: \\text{order 0 (GF):}\\; v(t) = v_0 e^{-4\\lambda t}; \\qquad
              \\text{order 1 (EoM, } \\tilde\\xi_0\\text{):}\\;
              v(t) = v_* + (v_0 - v_*)\\,e^{-(4\\lambda + 2\\eta\\lambda^2) t},

    with :math:`v_* = \\eta c^2/(2\\lambda + \\eta\\lambda^2)`. Gradient flow collapses the norm; the EoM
    settles at :math:`v_*`. Compare with GD at :math:`t = k\\eta`.

    Args:
      ts: times.
      r0: initial norm :math:`r(0) > 0`.
      eta: learning rate (enters only at order 1).
      lam: weight decay.
      c: tangential gradient norm at unit radius.
      order: 0 (gradient flow) or 1 (EoM with :math:`\\tilde\\xi_0`).

    Returns:
      :math:`r^2(t)` at ``ts``.

    Raises:
      ValueError: for invalid hyper-parameters or an order other than 0 and 1.
    """
    check_hparams(eta=eta, lam=lam)
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (gradient flow) or 1 (EoM with xi_0), got {order!r}")
    check_positive("r0", r0)
    check_positive("c", c)
    if order == 1:
        check_positive("lam", lam, why="for the EoM's equilibrium")
    ts = jnp.asarray(ts, dtype=jnp.result_type(float))
    v0 = jnp.asarray(r0, dtype=ts.dtype) ** 4
    if order == 0:
        v = v0 * jnp.exp(-4 * lam * ts)
    else:
        rate = 4 * lam + 2 * eta * lam**2
        v_star = 2 * eta * c**2 / rate
        v = v_star + (v0 - v_star) * jnp.exp(-rate * ts)
    return jnp.sqrt(v)


def equilibrium_angle(*, eta, beta=0.0, lam) -> jax.Array:
    """Equilibrium angular update per step of a scale-invariant filter: :math:`\\sqrt{2\\eta\\lambda/(1+\\beta)}`.

    SI C.2 of Tanaka & Kunin (2021) (after Wan et al.). Exact in any stationary state in the sense
    :math:`\\overline{\\|q_{n+1} - q_n\\|^2} = \\tfrac{2\\eta\\lambda}{1+\\beta}\\overline{\\|q_n\\|^2}` (from
    :func:`~dyncore.noether.discrete_nld` with :math:`S = I`), whatever the gradients: full batch, noisy or oscillating.

    Raises:
      ValueError: for invalid hyper-parameters.
    """
    check_hparams(eta=eta, lam=lam, beta=beta)
    return jnp.sqrt(2 * eta * lam / (1 + beta))


def equilibrium_norm4(*, eta, beta=0.0, lam, grad2, coherent: bool = True) -> jax.Array:
    """Equilibrium :math:`r_*^4 = \\|q\\|^4` of a scale-invariant filter under heavy ball with weight decay.

    .. math:: r_*^4 = \\frac{\\eta(1+\\beta)\\,g^2}{2\\lambda(1-\\beta)^2} \\ \\text{(coherent; SI C.2)},
              \\qquad r_*^4 = \\frac{\\eta\\, g^2}{2\\lambda(1-\\beta)} \\ \\text{(uncorrelated gradients)},

    with :math:`g^2 = \\|\\nabla f(\\hat q)\\|^2`, the gradient at the unit vector. The paper's coherent
    formula assumes the velocity is the accumulated gradient, :math:`\\|\\dot q\\| = g/(\\mu r)`; with
    gradients that decorrelate from step to step it overestimates :math:`r_*^4` by
    :math:`(1+\\beta)/(1-\\beta)` (19 at :math:`\\beta = 0.9`). Leading order in :math:`\\eta\\lambda`; the
    exact heavy-ball value for the angle toy is :func:`norm_equilibrium` (``model="gd"``).

    Raises:
      ValueError: for invalid hyper-parameters.
    """
    check_hparams(eta=eta, lam=lam, beta=beta)
    if coherent:
        return eta * (1 + beta) * grad2 / (2 * lam * (1 - beta) ** 2)
    return eta * grad2 / (2 * lam * (1 - beta))


def norm_law(grad2: jax.Array, *, r0_sq, eta, beta=0.0, lam) -> jax.Array:
    """The norm law, Eq. (17) of Tanaka & Kunin (2021), along a run: :math:`r^2(t)` from the gradient norms.

    .. math:: r^4(t) = e^{-\\frac{4\\lambda}{1-\\beta}t}\\, r^4(0)
              + \\frac{2\\eta(1+\\beta)}{(1-\\beta)^3}\\int_0^t e^{-\\frac{4\\lambda}{1-\\beta}(t-\\tau)}\\,\\|\\nabla f(\\hat q(\\tau))\\|^2\\, d\\tau ,

    with :math:`t = n\\eta`, integrated exactly for :math:`\\|\\nabla f(\\hat q)\\|^2` constant over each step.
    It is the solution of the quasi-static Eq. (16); exact for no model, accurate for
    :math:`\\beta = 0`, and for :math:`\\beta > 0` only when the gradients stay coherent over about
    :math:`1/(1-\\beta)` steps (see :func:`coherence`).

    Args:
      grad2: ``(N, ...)`` values of :math:`\\|\\nabla f(\\hat q_n)\\|^2 = r_n^2\\|\\nabla f(q_n)\\|^2` for steps
        ``n = 0 .. N-1`` (trailing axes: independent filters).
      r0_sq: :math:`r^2(0)` (broadcast against ``grad2[0]``).
      eta, lam, beta: hyper-parameters.

    Returns:
      ``(N + 1, ...)`` predicted :math:`r_n^2`.
    """
    check_hparams(eta=eta, lam=lam, beta=beta)
    grad2 = jnp.asarray(grad2)
    x = 4 * lam * eta / (1 - beta)  # decay of r^4 per step
    gain = 2 * eta * (1 + beta) / (1 - beta) ** 3 * eta * _one_minus_exp_ratio(x)
    decay = jnp.exp(-x)

    def step(r4, g2):
        r4 = decay * r4 + gain * g2
        return r4, r4

    r4_0 = jnp.broadcast_to(jnp.asarray(r0_sq, grad2.dtype) ** 2, grad2.shape[1:])
    _, r4 = jax.lax.scan(step, r4_0, grad2)
    return jnp.sqrt(jnp.concatenate([r4_0[None], r4]))


def coherence(step2: jax.Array, grad2: jax.Array, *, eta, beta) -> jax.Array:
    """Coherence of the steps with the gradients, as assumed by the norm law (Eq. (16)):

    .. math:: \\kappa = \\frac{(1-\\beta)^2\\,\\overline{\\|q_{n+1} - q_n\\|^2}}{\\eta^2\\,\\overline{\\|\\nabla f(q_n)\\|^2}} .

    Eq. (16) assumes :math:`\\kappa = 1` (the velocity is the accumulated gradient). Uncorrelated
    gradients give :math:`\\kappa = (1-\\beta)/(1+\\beta)`, a period-2 oscillation
    :math:`(1-\\beta)^2/(1+\\beta)^2`; for :math:`\\beta = 0` and no weight decay, :math:`\\kappa = 1` always.
    In a stationary state :func:`equilibrium_angle` turns this into :math:`r^4 \\approx \\kappa\\, r^4_{(17)}`:
    the norm law overestimates :math:`r^4` by :math:`1/\\kappa`.

    Args:
      step2: ``(N, ...)`` squared steps :math:`\\|q_{n+1} - q_n\\|^2` over a window (trailing axes: filters).
      grad2: ``(N, ...)`` squared gradients :math:`\\|\\nabla f(q_n)\\|^2` (of the loss, without weight
        decay; the minibatch gradient of each step for SGD).
      eta, beta: learning rate and momentum.

    Returns:
      :math:`\\kappa` with the trailing shape; means are over axis 0.

    Raises:
      ValueError: for invalid ``eta`` or ``beta``.
    """
    check_hparams(eta=eta, beta=beta)
    return (1 - beta) ** 2 * jnp.mean(step2, axis=0) / (eta**2 * jnp.mean(grad2, axis=0))


class RMSPropNorm(NamedTuple):
    """Hyper-parameters of the scalar RMSProp on the sphere that GD with weight decay implements.

    Attributes:
      rho: the discount :math:`\\rho = (1-\\eta\\lambda)^4`.
      eta: the RMSProp learning rate :math:`\\eta_R = \\sqrt{(1-\\rho)/(2\\rho)}`.
      G0: the initial accumulator :math:`G_0 = (1-\\rho)\\, r_0^4 / (2\\sqrt\\rho\\,\\eta^2)`.
    """

    rho: jax.Array
    eta: jax.Array
    G0: jax.Array


def rmsprop_mapping(*, eta, lam, r0_sq) -> RMSPropNorm:
    """Map GD with weight decay on a scale-invariant loss to a scalar RMSProp on the unit sphere.

    For :math:`\\beta = 0`, with :math:`q_n = r_n u_n` and :math:`g_n = \\|\\nabla f(u_n)\\|`, GD gives exactly

    .. math:: u_{n+1} = \\mathrm{normalize}\\Big(u_n - \\frac{\\eta}{(1-\\eta\\lambda)r_n^2}\\nabla f(u_n)\\Big),
              \\quad r_{n+1}^4 = (1-\\eta\\lambda)^4 r_n^4 + 2(1-\\eta\\lambda)^2\\eta^2 g_n^2 + \\eta^4 g_n^4/r_n^4 .

    Identifying :math:`G_n = \\eta_R^2 (1-\\eta\\lambda)^2 r_n^4/\\eta^2` turns this into
    :func:`sphere_rmsprop` with the returned :math:`\\rho, \\eta_R, G_0`, up to the last term of
    :math:`r^4` (relative size :math:`\\eta^2 g^2/(2r^4)`). This makes exact the analogy of Tanaka & Kunin
    (2021), Eqs. (17)–(18), where :math:`\\rho \\approx 1 - 4\\eta\\lambda` (weight decay sets the
    discount, not "1 − k").

    Args:
      eta, lam: GD's learning rate and weight decay.
      r0_sq: the initial squared norm :math:`r_0^2`.
    """
    check_hparams(eta=eta, lam=lam)
    rho = (1 - eta * lam) ** 4
    return RMSPropNorm(rho, jnp.sqrt((1 - rho) / (2 * rho)), (1 - rho) * r0_sq**2 / (2 * jnp.sqrt(rho) * eta**2))


class SphereRun(NamedTuple):
    """Output of :func:`sphere_rmsprop`: directions ``u`` ``(N+1, d)`` and accumulators ``G`` ``(N+1,)``."""

    u: jax.Array
    G: jax.Array


def sphere_rmsprop(loss: Loss, theta0: jax.Array, n_steps: int, *, eta, rho, G0) -> SphereRun:
    """Run the scalar RMSProp on the unit sphere of Tanaka & Kunin (2021) and record its accumulator:

    .. math:: u_{n+1} = \\mathrm{normalize}\\Big(u_n - \\frac{\\eta}{\\sqrt{G_n}}\\nabla f(u_n)\\Big), \\qquad
              G_{n+1} = \\rho\\, G_n + (1-\\rho)\\,\\|\\nabla f(u_n)\\|^2

    (:func:`dyncore.optimizers.rmsprop_on_sphere` run by :func:`dyncore.runner.run`, whose observer
    records :math:`G`). The accumulator is one scalar, has no :math:`\\varepsilon` and is used
    *before* its update: this is not ``optax.rmsprop``.

    Args:
      loss: a loss of a vector ``u``.
      theta0: the starting direction (normalized here).
      n_steps: number of steps (static).
      eta, rho, G0: learning rate, discount and initial accumulator (:func:`rmsprop_mapping`).

    Raises:
      ValueError: for invalid hyper-parameters or step count.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    u0 = jnp.asarray(theta0) / jnp.linalg.norm(theta0)
    G0 = jnp.asarray(G0, u0.dtype)

    def accumulate(G, u, new_u, g):
        return rho * G + (1 - rho) * jnp.sum(g**2)

    observer = Observer(init=lambda u: G0, update=accumulate)
    traj = run(rmsprop_on_sphere(eta, rho=rho, G0=G0), loss, u0, n_steps, observe=observer)
    return SphereRun(traj.params, traj.observed)


def rescaled_hparams(alpha, *, eta, lam) -> tuple[Any, Any]:
    """Scaling a scale-invariant filter's initialization by :math:`\\alpha` is a change of :math:`\\eta, \\lambda`:

    .. math:: \\mathrm{HB}(\\alpha q_0;\\, \\eta, \\beta, \\lambda) = \\alpha\\,\\mathrm{HB}(q_0;\\, \\eta/\\alpha^2, \\beta, \\alpha^2\\lambda)

    iterate by iterate (:math:`\\nabla f(\\alpha q) = \\nabla f(q)/\\alpha`). Only :math:`\\eta\\lambda` and
    :math:`\\beta` are invariant; this explains Fig. 2b of Tanaka & Kunin (2021).

    Returns:
      ``(eta / alpha**2, alpha**2 * lam)``.

    Raises:
      ValueError: for ``alpha <= 0`` or invalid hyper-parameters.
    """
    check_hparams(eta=eta, lam=lam)
    if is_concrete(alpha) and not float(alpha) > 0:
        raise ValueError(f"alpha must be > 0, got {float(alpha):g}")
    return eta / alpha**2, alpha**2 * lam


def _validated(eta, lam, c2, r0, beta):
    r"""Check the arguments of the norm law and the clock; return ``(eta / (1 - beta), lam, c2, r0)``.

    Momentum enters these formulas only through the effective learning rate :math:`\eta/(1-\beta)`.
    """
    check_hparams(eta=eta, lam=lam, beta=beta)
    check_positive("c2", c2)
    check_positive("r0", r0)
    eta, lam, c2, r0, beta = (as_float(v) for v in (eta, lam, c2, r0, beta))
    return eta / (1 - beta), lam, c2, r0


def sde_norm4(k: ArrayLike, *, eta, beta=0.0, lam, c2=1.0, r0=1.0) -> jax.Array:
    r"""The norm law of the paper's Eq. (10): :math:`\|X\|^4` after :math:`k` steps of the SDE (3).

    For a scale-invariant loss with :math:`\operatorname{tr}\Sigma(x) = C/\|x\|^2` the SDE's norm is
    deterministic:

    .. math:: \|X(k)\|^4 = \frac{\eta C}{2\lambda} + e^{-4\eta\lambda k}\Big(r_0^4 - \frac{\eta C}{2\lambda}\Big)
              \;\xrightarrow{\ \lambda \to 0\ }\; r_0^4 + 2\eta^2 C k .

    The paper prints the equilibrium in Sec. 7 as :math:`(\lambda/\eta)^{1/4}`: the exponent's sign is
    wrong, it is :math:`\|X\|_\infty = (\eta C/2\lambda)^{1/4}`. SGD's discrete equilibrium is larger by
    :math:`O(\sqrt{\eta\lambda})` (see the chapter). With momentum (an extension, derived and
    checked numerically for white noise) replace :math:`\eta` by :math:`\eta/(1-\beta)`.

    Args:
      k: step counts.
      eta, lam, beta: hyper-parameters (``lam = 0`` gives the no-decay growth).
      c2: :math:`C = \operatorname{tr}\Sigma` on the unit sphere, :math:`> 0`.
      r0: initial norm :math:`> 0`.

    Returns:
      :math:`\|X(k)\|^4`.

    Raises:
      ValueError: for invalid hyper-parameters, ``c2 <= 0`` or ``r0 <= 0``.
    """
    e, lam, c2, r0 = _validated(eta, lam, c2, r0, beta)
    k = as_float(k)
    x = 4 * e * lam * k
    # r0⁴ e^{-x} + (ηC/2λ)(1 − e^{-x}), written so that λ = 0 is the limit r0⁴ + 2η²Ck
    return r0**4 * jnp.exp(-x) + 2 * e**2 * c2 * k * _one_minus_exp_ratio(x)


def clock(k: ArrayLike, *, eta, beta=0.0, lam, c2=1.0, r0=1.0) -> jax.Array:
    r"""The paper's clock :math:`\tau_{\eta,\lambda}` (Eq. (12)): the limiting time reached after :math:`k` steps.

    .. math:: \tau(k) = \int_0^k \frac{\eta^2 C}{\|X(s)\|^4}\,ds
              = \frac12\ln\Big(1 + A\big(e^{4\eta\lambda k} - 1\big)\Big), \qquad A = \frac{\eta C}{2\lambda r_0^4},

    with :math:`\|X\|^4` from :func:`sde_norm4`. For :math:`C = r_0 = 1` this is Eq. (12) verbatim; the
    general :math:`C, r_0` is the paper's Remark 4.2. It ticks :math:`\eta^2C/r_0^4` per step at first
    and :math:`2\eta\lambda` per step once the norm has equilibrated; without weight decay,
    :math:`\tau(k) = \tfrac12\ln(1 + 2\eta^2Ck/r_0^4)` grows only logarithmically. On a manifold of
    dimension :math:`D-1` inside the sphere with isotropic tangent noise (the great circle), the angle
    variance is :math:`\tau(k)/(D-1)`.

    Args:
      k: step counts.
      eta, lam, beta: hyper-parameters (``lam = 0`` allowed; ``beta`` replaces :math:`\eta` by
        :math:`\eta/(1-\beta)`, an extension).
      c2: :math:`C > 0`.
      r0: initial norm :math:`> 0`.

    Returns:
      :math:`\tau(k)`.

    Raises:
      ValueError: for invalid hyper-parameters, ``c2 <= 0`` or ``r0 <= 0``.
    """
    e, lam, c2, r0 = _validated(eta, lam, c2, r0, beta)
    k = as_float(k)
    x = 4 * e * lam * k
    # A (e^x − 1) = (2η²Ck / r0⁴) (e^x − 1)/x, finite at λ = 0
    return 0.5 * jnp.log1p(2 * e**2 * c2 * k / r0**4 * _safe_expm1_ratio(x))


def clock_inverse(T: ArrayLike, *, eta, beta=0.0, lam, c2=1.0, r0=1.0) -> jax.Array:
    r"""Steps needed to reach limiting time :math:`T`: the inverse of :func:`clock`.

    .. math:: \tau^{-1}(T) = \frac{\ln\big(1 + (e^{2T}-1)/A\big)}{4\eta\lambda}
              \approx \frac{\ln(2\lambda r_0^4/(\eta C)) + 2T}{4\eta\lambda},

    the paper's Theorem 5.5 (with :math:`C = r_0 = 1`): a log phase for the norm plus
    :math:`T/(2\eta\lambda)` steps of mixing. (The abstract's :math:`\ln(1 + T\lambda/\eta)/(4\eta\lambda)`
    is not this function of the same :math:`T`.) At :math:`\lambda = 0` it is
    :math:`r_0^4(e^{2T}-1)/(2\eta^2C)`: exponentially many steps in :math:`T`.

    Raises:
      ValueError: for invalid hyper-parameters, ``c2 <= 0``, ``r0 <= 0`` or a negative ``T``.
    """
    e, lam, c2, r0 = _validated(eta, lam, c2, r0, beta)
    check_positive("T", T, allow_zero=True)
    T = as_float(T)
    a_inv = 2 * lam * r0**4 / (e * c2)  # 1/A
    y = jnp.expm1(2 * T)
    with_wd = jnp.log1p(y * a_inv) / (4 * e * jnp.where(lam == 0, 1.0, lam))
    no_wd = r0**4 * y / (2 * e**2 * c2)
    return jnp.where(lam == 0, no_wd, with_wd)

