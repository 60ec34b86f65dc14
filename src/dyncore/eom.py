r"""The equation of motion of gradient descent (Miyagawa 2022): closed forms and translation invariance.

GD's modified flow (the counter terms of :func:`dyncore.flows.counter_terms`, summed to all
orders) has closed forms on a quadratic (:func:`log_flow_quadratic`); on a translation-invariant
layer, :math:`f(\theta + \alpha\mathbb 1_{\mathcal A}) = f(\theta)` (the last layer before a softmax),
:math:`\mathbb 1_{\mathcal A}\cdot\nabla f = 0` and the mean component
:math:`\theta_{\mathcal A\perp} = m\,\mathbb 1_{\mathcal A}` shrinks by exactly :math:`1-\eta\lambda` per step
(:func:`mean_component`, :func:`mean_decay_rate`). Scale-invariant layers are in
:mod:`dyncore.scale_invariance`.

>>> import jax.numpy as jnp
>>> ts = jnp.array([0.0, 0.25, 0.5, 1.0])         # GD with eta = 0.5 steps at t = 0, 0.5, 1
>>> path = log_flow_quadratic(jnp.eye(1), jnp.array([1.0]), ts, eta=0.5)
>>> [round(float(x), 6) for x in path[:, 0]]      # through GD's iterates 1, 0.5, 0.25; sqrt(0.5) between
[1.0, 0.707107, 0.5, 0.25]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from .curvature import decayed_spectrum
from .validation import check_hparams, is_concrete

__all__ = ["log_flow_quadratic", "mean_component", "mean_decay_rate"]


def log_flow_quadratic(A: ArrayLike, theta0: ArrayLike, ts: ArrayLike, *, eta, lam=0.0) -> jax.Array:
    """The all-orders modified flow of GD on a quadratic, in closed form.

    For :math:`L = \\tfrac12\\theta^\\top A\\theta` and :math:`J = A + \\lambda I`, summing every counter term
    gives the linear flow :math:`\\dot\\theta = \\tfrac1\\eta\\log(I - \\eta J)\\,\\theta`, whose solution

    .. math:: \\theta(t) = V\\,\\mathrm{diag}\\big((1 - \\eta\\mu_i)^{t/\\eta}\\big)\\,V^\\top\\theta_0
              \\qquad (J = V\\,\\mathrm{diag}(\\mu)\\,V^\\top)

    passes through every GD iterate: :math:`\\theta(k\\eta) = (I - \\eta J)^k\\theta_0`. It is real
    when :math:`\\eta\\mu_i < 1` for all :math:`i`; beyond that, see the principal-flow chapter.

    Args:
      A: symmetric ``(d, d)`` matrix.
      theta0: ``(d,)`` start.
      ts: times at which to evaluate.
      eta: learning rate.
      lam: weight decay.

    Returns:
      ``(len(ts), d)`` array.

    Raises:
      ValueError: if the real logarithm does not exist, i.e. :math:`1-\\eta\\mu \\le 0` for some
        eigenvalue (``eta * mu_max >= 1``).
    """
    check_hparams(eta=eta, lam=lam)
    A = jnp.asarray(A, dtype=jnp.result_type(float))  # an integer A must not truncate the times
    mu, V = decayed_spectrum(A, lam)
    base = 1.0 - eta * mu
    if is_concrete(base) and not bool(jnp.all(base > 0)):
        raise ValueError(
            f"the real log-flow needs eta * mu < 1 for every eigenvalue mu of A + lam*I; "
            f"got eta * mu_max = {float(eta * mu[-1]):g}"
        )
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=A.dtype))
    coeff = V.T @ jnp.asarray(theta0, A.dtype)
    powers = jnp.exp(jnp.log(base)[None, :] * (ts[:, None] / eta))
    return (powers * coeff[None, :]) @ V.T


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


def mean_decay_rate(*, eta, lam, order: int | None = None) -> jax.Array:
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

