"""Continuous-time models of gradient descent: the vector fields of backward error analysis.

A *vector field* is a function ``field(theta) -> theta_dot`` on parameter pytrees. This module
builds the fields of the book's first chapters (gradient flow, the modified flows of backward
error analysis to any order); :mod:`dyncore.integration` integrates them. The *model* (loss), the
*method* (the integrator) and the *measurement* (the checks) stay separate.

Notation: :math:`g(\\theta) = \\nabla L(\\theta) + \\lambda\\theta` is the gradient of the loss with
weight decay, :math:`J = \\nabla g = H + \\lambda I`, and GD is
:math:`\\theta_{k+1} = \\theta_k - \\eta\\, g(\\theta_k)`.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .validation import check_hparams, check_positive_int

__all__ = ["gradient_field", "counter_terms", "modified_field", "modified_loss"]

Params = Any
Field = Callable[[Params], Params]
Loss = Callable[[Params], jax.Array]

_tmap = jax.tree_util.tree_map


def _grad_with_decay(loss: Loss, lam) -> Field:
    grad = jax.grad(loss)
    return lambda theta: _tmap(lambda g, t: g + lam * t, grad(theta), theta)


def gradient_field(loss: Loss, *, lam=0.0) -> Field:
    """Gradient flow :math:`\\dot\\theta = -g(\\theta) = -(\\nabla L(\\theta) + \\lambda\\theta)`.

    Raises:
      ValueError: if ``lam < 0``.

    Example:

    >>> import jax.numpy as jnp
    >>> gradient_field(lambda th: 0.5 * jnp.sum(th**2), lam=0.5)(jnp.array([2.0])).tolist()
    [-3.0]
    """
    check_hparams(lam=lam)
    g = _grad_with_decay(loss, lam)
    return lambda theta: _tmap(jnp.negative, g(theta))


def _lie(V: Field, W: Field) -> Field:
    """The Lie derivative :math:`(V\\cdot\\nabla) W`, one forward-mode JVP, no 3-tensor."""
    return lambda theta: jax.jvp(W, (theta,), (V(theta),))[1]


@lru_cache(maxsize=None)
def _compositions(total: int, parts: int) -> tuple[tuple[int, ...], ...]:
    """All ordered tuples of ``parts`` non-negative integers summing to ``total``."""
    out = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        prev, comp = -1, []
        for b in bars:
            comp.append(b - prev - 1)
            prev = b
        comp.append(total + parts - 1 - prev - 1)
        out.append(tuple(comp))
    return tuple(out)


def counter_terms(loss: Loss, order: int, *, lam=0.0) -> list[Field]:
    """The counter terms :math:`\\tilde\\xi_0, \\ldots, \\tilde\\xi_{\\mathrm{order}-1}` of GD's modified equation.

    They solve Miyagawa's recursion (Eq. (8) of Miyagawa 2022; the modified equation of explicit
    Euler, Hairer–Lubich–Wanner ch. IX):

    .. math:: \\tilde\\xi_\\alpha = \\sum_{i=2}^{\\alpha+2} \\; \\sum_{k_1+\\dots+k_i = \\alpha-i+2}
              \\frac{(-1)^i}{i!}\\, \\mathcal D_{k_1}\\cdots\\mathcal D_{k_{i-1}}\\, \\Xi_{k_i},

    with :math:`\\mathcal D_0 = g\\cdot\\nabla`, :math:`\\mathcal D_k = \\tilde\\xi_{k-1}\\cdot\\nabla`,
    :math:`\\Xi_0 = g`, :math:`\\Xi_k = \\tilde\\xi_{k-1}`, each operator acting on the whole field to
    its right. Every Lie derivative is one nested ``jax.jvp``, so no third-derivative tensor is ever
    formed. Closed forms: :math:`\\tilde\\xi_0 = \\tfrac12 J g = \\tfrac14 \\nabla\\|g\\|^2` and
    :math:`\\tilde\\xi_1 = \\tfrac13 J^2 g + \\tfrac1{12}\\nabla^3 L[g, g]`.

    The cost grows quickly with the order (the number of terms of :math:`\\tilde\\xi_\\alpha` and the
    nesting depth both grow with :math:`\\alpha`); orders up to 3 compile in seconds.

    Args:
      loss: scalar loss of a pytree.
      order: how many counter terms (``order >= 1``).
      lam: weight decay :math:`\\lambda`, part of :math:`g`.

    Returns:
      ``[xi_0, ..., xi_{order-1}]``, each a field ``theta -> pytree``.

    Example:

    >>> import jax.numpy as jnp
    >>> xi0, = counter_terms(lambda th: 0.5 * 3.0 * th**2, 1)    # xi_0 = J g / 2 = 9 th / 2
    >>> float(xi0(jnp.array(1.0)))
    4.5
    """
    order = check_positive_int("order", order)
    check_hparams(lam=lam)
    g = _grad_with_decay(loss, lam)
    xis: list[Field] = []

    def Xi(k: int) -> Field:
        return g if k == 0 else xis[k - 1]

    for alpha in range(order):
        terms: list[tuple[float, Field]] = []
        for i in range(2, alpha + 3):
            for comp in _compositions(alpha - i + 2, i):
                W = Xi(comp[-1])
                for k in reversed(comp[:-1]):
                    W = _lie(Xi(k), W)
                terms.append(((-1) ** i / math.factorial(i), W))

        def xi(theta, terms=terms):
            vals = [_tmap(lambda v, c=c: c * v, W(theta)) for c, W in terms]
            return _tmap(lambda *vs: sum(vs), *vals)

        xis.append(xi)
    return xis


def modified_field(loss: Loss, *, eta, order: int, lam=0.0) -> Field:
    """The modified flow of GD truncated at ``order``:

    .. math:: \\dot\\theta = -\\Big(g + \\sum_{\\alpha=0}^{\\mathrm{order}-1} \\eta^{\\alpha+1}\\tilde\\xi_\\alpha\\Big).

    ``order=0`` is gradient flow (global error :math:`O(\\eta)` against GD at a fixed time),
    ``order=1`` is the implicit-gradient-regularisation flow
    :math:`-(g + \\tfrac\\eta2 J g)`, the gradient flow of :func:`modified_loss` (error
    :math:`O(\\eta^2)`), and in general the error is :math:`O(\\eta^{\\mathrm{order}+1})`.

    Args:
      loss: scalar loss.
      eta: GD's learning rate (may be traced).
      order: truncation order, ``>= 0``.
      lam: weight decay.

    Example:

    >>> import jax.numpy as jnp
    >>> field = modified_field(lambda th: 0.5 * th**2, eta=0.1, order=1)   # -(1 + eta/2) th
    >>> round(float(field(jnp.array(1.0))), 6)
    -1.05
    """
    check_hparams(eta=eta, lam=lam)
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    g = _grad_with_decay(loss, lam)
    order = int(order)
    xis = counter_terms(loss, order, lam=lam) if order else []

    def field(theta):
        total = g(theta)
        for a, xi in enumerate(xis):
            total = _tmap(lambda s, x, a=a: s + eta ** (a + 1) * x, total, xi(theta))
        return _tmap(jnp.negative, total)

    return field


def modified_loss(loss: Loss, *, eta, lam=0.0) -> Loss:
    """Barrett & Dherin's modified loss :math:`\\tilde L = L_\\lambda + \\tfrac\\eta4\\|\\nabla L_\\lambda\\|^2`.

    Here :math:`L_\\lambda = L + \\tfrac\\lambda2\\|\\theta\\|^2`. Its gradient flow is
    ``modified_field(loss, eta=eta, order=1, lam=lam)``: implicit gradient regularisation.

    Example:

    >>> import jax.numpy as jnp
    >>> round(float(modified_loss(lambda th: 0.5 * th**2, eta=0.1)(jnp.array(2.0))), 6)   # 2 + 0.1 * 4 / 4
    2.1
    """
    check_hparams(eta=eta, lam=lam)
    g = _grad_with_decay(loss, lam)

    def tilde(theta):
        reg = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(g(theta)))
        wd = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(theta))
        return loss(theta) + 0.5 * lam * wd + 0.25 * eta * reg

    return tilde
