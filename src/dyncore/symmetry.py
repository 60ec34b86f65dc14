"""Symmetric layers under gradient descent: norms, angular updates and decaying components.

Two symmetries of a layer :math:`\\mathcal A` (a block of coordinates) shape the long-time
behaviour of GD with weight decay :math:`\\lambda` (Miyagawa 2022, Sec. 5):

* **scale invariance**, :math:`f(\\alpha\\theta_{\\mathcal A} + \\theta_{\\mathcal A^c}) = f(\\theta)` for
  :math:`\\alpha > 0` (a layer followed by a normalisation). Then
  :math:`\\theta_{\\mathcal A}\\perp\\nabla_{\\mathcal A} f` and :math:`\\|\\nabla_{\\mathcal A} f\\|` scales like
  :math:`1/r` with :math:`r = \\|\\theta_{\\mathcal A}\\|`, so GD's step is exactly

  .. math:: r_{k+1}^2 = (1-\\eta\\lambda)^2 r_k^2 + \\eta^2 \\frac{c_k^2}{r_k^2}, \\qquad
            \\cos\\Delta_k = (1-\\eta\\lambda)\\,\\frac{r_k}{r_{k+1}},

  with :math:`c_k = \\|\\nabla_{\\mathcal A} f(\\hat\\theta_{\\mathcal A,k} + \\theta_{\\mathcal A^c,k})\\|` and
  :math:`\\Delta_k` the angle between consecutive iterates of the layer;
* **translation invariance**, :math:`f(\\theta + \\alpha\\mathbb 1_{\\mathcal A}) = f(\\theta)` (the last layer
  before a softmax). Then :math:`\\mathbb 1_{\\mathcal A}\\cdot\\nabla f = 0` and the mean component
  :math:`\\theta_{\\mathcal A\\perp} = m\\,\\mathbb 1_{\\mathcal A}` shrinks by exactly :math:`1-\\eta\\lambda`
  per step.

This module measures those quantities on trajectories and gives their closed-form predictions:
exact for GD, and those of the continuous models (gradient flow, the equation of motion with
the first counter term, the paper's corollaries) for comparison.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from .validation import check_hparams, check_positive, is_concrete

__all__ = [
    "angular_update",
    "NormEquilibrium",
    "norm_equilibrium",
    "norm_flow",
    "mean_component",
    "mean_decay_rate",
]

_MODELS = ("gd", "eom", "paper", "leading")


def angular_update(path: ArrayLike) -> jax.Array:
    """Cosine of the angle between consecutive iterates of a layer (the angular update).

    .. math:: \\cos\\Delta_k = \\hat\\theta_k\\cdot\\hat\\theta_{k+1}, \\qquad \\hat\\theta = \\theta/\\|\\theta\\|.

    The angular update of Wan et al. (2021), used by Miyagawa (2022, Cor. 5.2).

    Args:
      path: iterates of the layer stacked on a leading axis, shape ``(n + 1, ...)`` (e.g. the
        ``params`` of a :class:`~dyncore.optimizers.Trajectory`, or one layer of it).

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


def norm_equilibrium(eta, lam, c=1.0, *, model: str = "gd", beta=0.0) -> NormEquilibrium:
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


def norm_flow(ts: ArrayLike, r0, eta, lam, c=1.0, *, order: int = 1) -> jax.Array:
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


def mean_component(params: Any) -> jax.Array:
    """The mean component of a layer: the :math:`m` in :math:`\\theta_{\\mathcal A\\perp} = m\\mathbb 1_{\\mathcal A}`.

    :math:`m = \\mathbb 1_{\\mathcal A}\\cdot\\theta_{\\mathcal A}/d_{\\mathcal A}`, the mean over all entries of
    the layer (a pytree: over all entries of all its leaves), so that
    :math:`\\|\\theta_{\\mathcal A\\perp}\\| = |m|\\sqrt{d_{\\mathcal A}}`.
    For a translation-invariant layer this is the one direction the loss never sees.
    """
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params has no entries")
    total = sum(jnp.sum(leaf) for leaf in leaves)
    size = sum(jnp.size(leaf) for leaf in leaves)
    return total / size


def mean_decay_rate(eta, lam, *, order: int | None = None) -> jax.Array:
    """Per-step decay rate of the mean component of a translation-invariant layer.

    GD multiplies :math:`\\theta_{\\mathcal A\\perp}` by exactly :math:`1-\\eta\\lambda` per step, so its rate
    is :math:`-\\ln(1-\\eta\\lambda)` (``order=None``). The modified flow truncated after
    :math:`\\tilde\\xi_{\\mathrm{order}-1}` predicts the partial sum (Miyagawa 2022, Thm 5.2 and Table 1):

    .. math:: \\sum_{j=0}^{\\mathrm{order}} \\frac{(\\eta\\lambda)^{j+1}}{j+1}
              = \\eta\\lambda \\;(\\text{order } 0,\\ \\text{GF}),\\quad
              \\eta\\lambda + \\tfrac{(\\eta\\lambda)^2}{2} \\;(\\text{order } 1,\\ \\text{EoM}),\\ \\ldots

    Args:
      eta: learning rate.
      lam: weight decay.
      order: ``None`` for GD's exact rate, or the truncation order ``>= 0``.

    Returns:
      The rate per step (multiply by :math:`1/\\eta` for the rate per unit time).

    Raises:
      ValueError: for invalid hyper-parameters, ``eta * lam >= 1`` (GD no longer decays
        monotonically), or a negative order.
    """
    check_hparams(eta=eta, lam=lam)
    if is_concrete((eta, lam)):
        x_max = float(np.max(np.asarray(eta, dtype=float) * np.asarray(lam, dtype=float)))
        if not x_max < 1:
            raise ValueError(f"eta * lam must be < 1, got {x_max:g}")
    x = jnp.asarray(eta, dtype=jnp.result_type(float)) * lam
    if order is None:
        return -jnp.log1p(-x)
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise ValueError(f"order must be None or a non-negative integer, got {order!r}")
    return sum(x ** (j + 1) / (j + 1) for j in range(order + 1))
