"""Continuous-time models of gradient descent: vector fields and their integration.

A *vector field* is a function ``field(theta) -> theta_dot`` on parameter pytrees. This module
builds the fields of the book (gradient flow, the modified flows of backward error analysis to
any order) and integrates them with diffrax. The *model* (loss), the *method* (the integrator)
and the *measurement* (the checks) stay separate.

Notation: :math:`g(\\theta) = \\nabla L(\\theta) + \\lambda\\theta` is the gradient of the loss with
weight decay, :math:`J = \\nabla g = H + \\lambda I`, and GD is
:math:`\\theta_{k+1} = \\theta_k - \\eta\\, g(\\theta_k)`.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from .validation import check_hparams, check_positive, check_positive_int, is_concrete

__all__ = [
    "gradient_field",
    "counter_terms",
    "modified_field",
    "modified_loss",
    "FlowSolution",
    "integrate",
    "log_flow_quadratic",
]

Params = Any
Field = Callable[[Params], Params]
Loss = Callable[[Params], jax.Array]

_tmap = jax.tree_util.tree_map


def _decayed_spectrum(A: jax.Array, lam) -> tuple[jax.Array, jax.Array]:
    r"""Eigenvalues (ascending) and eigenvectors of :math:`J = (A + A^\top)/2 + \lambda I`."""
    J = 0.5 * (A + A.T) + lam * jnp.eye(A.shape[0], dtype=A.dtype)
    return jnp.linalg.eigh(J)


def _grad_with_decay(loss: Loss, lam) -> Field:
    grad = jax.grad(loss)
    return lambda theta: _tmap(lambda g, t: g + lam * t, grad(theta), theta)


def gradient_field(loss: Loss, lam=0.0) -> Field:
    """Gradient flow :math:`\\dot\\theta = -g(\\theta) = -(\\nabla L(\\theta) + \\lambda\\theta)`.

    Raises:
      ValueError: if ``lam < 0``.
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


def counter_terms(loss: Loss, order: int, lam=0.0) -> list[Field]:
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


def modified_field(loss: Loss, eta, order: int, lam=0.0) -> Field:
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
    """
    check_hparams(eta=eta, lam=lam)
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    g = _grad_with_decay(loss, lam)
    order = int(order)
    xis = counter_terms(loss, order, lam) if order else []

    def field(theta):
        total = g(theta)
        for a, xi in enumerate(xis):
            total = _tmap(lambda s, x, a=a: s + eta ** (a + 1) * x, total, xi(theta))
        return _tmap(jnp.negative, total)

    return field


def modified_loss(loss: Loss, eta, lam=0.0) -> Loss:
    """Barrett & Dherin's modified loss :math:`\\tilde L = L_\\lambda + \\tfrac\\eta4\\|\\nabla L_\\lambda\\|^2`.

    Here :math:`L_\\lambda = L + \\tfrac\\lambda2\\|\\theta\\|^2`. Its gradient flow is
    ``modified_field(loss, eta, 1, lam)``: implicit gradient regularisation.
    """
    check_hparams(eta=eta, lam=lam)
    g = _grad_with_decay(loss, lam)

    def tilde(theta):
        reg = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(g(theta)))
        wd = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(theta))
        return loss(theta) + 0.5 * lam * wd + 0.25 * eta * reg

    return tilde


class FlowSolution(NamedTuple):
    """Solution of :func:`integrate` at the requested times.

    Attributes:
      ts: the save times.
      ys: the state at each time, stacked on a leading axis (the last finite state is repeated
        after a blow-up, never NaN).
      diverged_at: index into ``ts`` of the first non-finite or too large state, ``-1`` if none.
    """

    ts: jax.Array
    ys: Params
    diverged_at: jax.Array


def integrate(
    field: Field,
    y0: Params,
    ts: ArrayLike,
    *,
    dt: float | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 1 << 16,
    max_norm: float = 1e8,
) -> FlowSolution:
    """Integrate :math:`\\dot y = \\mathrm{field}(y)` from ``y(ts[0]) = y0`` and save at ``ts``, with diffrax.

    Two modes:

    * ``dt`` given: fixed steps of size ``dt`` with Tsit5 (5th order), cheap and compiled once for
      any traced ``dt``; use ``dt = eta / 16`` or smaller to compare with GD at step size ``eta``.
    * ``dt=None``: adaptive Tsit5 with a PID controller at ``rtol``/``atol`` (defaults suit float64
      order checks; enable ``jax_enable_x64`` first).

    Stiff fields (large curvature) need ``dt`` well below ``2/lambda_max``; a state that becomes
    non-finite or larger than ``max_norm`` is reported in ``diverged_at``. Running out of
    ``max_steps`` before ``ts[-1]`` raises ``RuntimeError`` when called eagerly; under ``jit`` the
    unreached times count as diverged.

    Args:
      field: autonomous vector field ``y -> dy/dt`` (a pytree function).
      y0: initial state.
      ts: increasing save times; ``ts[0]`` is the initial time.
      dt: fixed step size, or ``None`` for adaptive stepping.
      rtol, atol: tolerances of the adaptive controller.
      max_steps: static bound on the number of solver steps.
      max_norm: bound beyond which the flow counts as diverged.

    Returns:
      A :class:`FlowSolution`.

    Raises:
      ValueError: for non-increasing ``ts`` or a non-positive ``dt`` (when concrete).
    """
    if is_concrete(ts) and not np.all(np.diff(np.asarray(ts, dtype=float)) > 0):
        raise ValueError("ts must be strictly increasing")
    ts = jnp.asarray(ts, dtype=jnp.result_type(float))
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least two times, got shape {ts.shape}")
    if dt is not None:
        check_positive("dt", dt)
    term = diffrax.ODETerm(lambda t, y, args: field(y))
    solver = diffrax.Tsit5()
    if dt is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = None
    else:
        controller = diffrax.ConstantStepSize()
        dt0 = dt
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
    )
    ys = sol.ys
    if is_concrete(sol.result) and sol.result == diffrax.RESULTS.max_steps_reached:
        raise RuntimeError(
            f"integrate: the solver used all max_steps={max_steps} steps before ts[-1]; "
            "raise max_steps or dt (or relax rtol/atol)"
        )
    leaves = jax.tree_util.tree_leaves(ys)
    sq = sum(jnp.sum(jnp.abs(leaf.reshape(leaf.shape[0], -1)) ** 2, axis=1) for leaf in leaves)
    good = jnp.isfinite(sq) & (sq <= max_norm**2)
    good = jnp.cumprod(good.astype(jnp.int32)).astype(bool)
    n_good = jnp.sum(good)
    diverged_at = jnp.where(n_good < ts.shape[0], n_good, -1)
    last = jnp.maximum(n_good - 1, 0)
    ys = _tmap(lambda y: jnp.where(good.reshape((-1,) + (1,) * (y.ndim - 1)), y, y[last]), ys)
    return FlowSolution(ts, ys, diverged_at)


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
    mu, V = _decayed_spectrum(A, lam)
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
