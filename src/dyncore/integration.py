r"""Integrators of flows: one fixed-step RK4 stepper, one divergence guard, diffrax for the rest.

Every integrator of the book is here:

* :func:`integrate`: an autonomous real flow :math:`\dot\theta = f(\theta)` with diffrax (Tsit5,
  fixed or adaptive steps);
* :func:`integrate_complex`: a complex flow (the principal flow beyond :math:`\eta\mu = 1`), by
  diffrax on the real pair or by RK4 on the complex state;
* :func:`integrate_flows`: several flows from one start, side by side in one solve;
* :func:`integrate_pieces`: a piecewise field that changes at every step boundary
  :math:`t = n\eta` (the modified flows of RMSProp and Adam).

The fixed-step methods share one classical Runge–Kutta stepper (:func:`rk4_step`), and every
integrator reports a blow-up through the same guard (:func:`frozen_after_bad`): a state that is
non-finite or larger than ``max_norm`` ends the good part of the path, which is then frozen at
its last good state, so that no NaN leaves this module.

>>> import jax.numpy as jnp
>>> from dyncore.integration import integrate_complex
>>> sol = integrate_complex(lambda y: -y, jnp.array([1.0]), jnp.array([0.0, 1.0]), substeps=20)
>>> round(float(sol.ys[-1, 0].real), 6), int(sol.diverged_at)   # e^{-1}
(0.367879, -1)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from .trees import as_complex, sq_norm, tmap
from .validation import check_hparams, check_positive, check_positive_int, is_concrete

__all__ = [
    "FlowSolution",
    "integrate",
    "integrate_complex",
    "integrate_flows",
    "integrate_pieces",
    "rk4_step",
    "rk4_piece",
    "frozen_after_bad",
]

Params = Any
Field = Callable[[Params], Params]
PieceField = Callable[[Params, jax.Array], Params]

_tmap = tmap


# ----------------------------------------------------------------------------- the two shared parts
def rk4_step(field: Field, y: Params, h) -> Params:
    r"""One classical fourth-order Runge–Kutta step of size ``h`` for :math:`\dot y = \mathrm{field}(y)`.

    The four stages run in a ``lax.scan``, so the field is traced (and compiled) once, not four times.

    >>> import jax.numpy as jnp
    >>> round(float(rk4_step(lambda y: y, jnp.array(1.0), 0.1)), 6)   # 1 + h + h^2/2 + h^3/6 + h^4/24
    1.105171
    """
    nodes = jnp.array([0.0, 0.5, 0.5, 1.0])  # k_s = f(y + nodes[s] h k_{s-1})
    weights = jnp.array([1.0, 2.0, 2.0, 1.0]) / 6

    def axpy(a, k, c):
        return _tmap(lambda u, v: u + c * v, a, k)

    def stage(carry, node_weight):
        k, acc = carry
        k = field(axpy(y, k, node_weight[0] * h))
        return (k, axpy(acc, k, node_weight[1])), None

    zero = _tmap(jnp.zeros_like, y)
    (_, acc), _ = jax.lax.scan(stage, (zero, zero), jnp.stack([nodes, weights], axis=1))
    return axpy(y, acc, h)


def rk4_piece(field: PieceField, y: Params, n, *, eta, substeps: int = 1) -> Params:
    r"""Integrate piece ``n`` of a piecewise field, :math:`[n\eta, (n+1)\eta]`, in ``substeps`` RK4 steps."""
    h = eta / substeps
    return jax.lax.fori_loop(0, substeps, lambda i, y: rk4_step(lambda x: field(x, n), y, h), y)


def frozen_after_bad(path: Params, max_norm) -> tuple[Params, jax.Array]:
    """``path`` (saved states, time first) frozen from its first non-finite or too large state on.

    Returns the frozen path and the number of good leading states (the first bad save index; the
    number of saves when all are good).

    >>> import jax.numpy as jnp
    >>> path, n_good = frozen_after_bad(jnp.array([1.0, 2.0, jnp.nan, 3.0]), 10.0)
    >>> path.tolist(), int(n_good)
    ([1.0, 2.0, 2.0, 2.0], 2)
    """
    leaves = jax.tree_util.tree_leaves(path)
    n_save = leaves[0].shape[0]
    sq = sum(jnp.sum(jnp.abs(x.reshape(n_save, -1)) ** 2, axis=1) for x in leaves)
    good = jnp.cumprod((jnp.isfinite(sq) & (sq <= max_norm**2)).astype(jnp.int32)).astype(bool)
    n_good = jnp.sum(good)
    last = jnp.maximum(n_good - 1, 0)
    path = _tmap(lambda y: jnp.where(good.reshape((-1,) + (1,) * (y.ndim - 1)), y, y[last]), path)
    return path, n_good


def _solution(ts: jax.Array, path: Params, max_norm) -> "FlowSolution":
    path, n_good = frozen_after_bad(path, max_norm)
    return FlowSolution(ts, path, jnp.where(n_good < ts.shape[0], n_good, -1))


def _rk4(field: Field, theta0: Params, ts: jax.Array, substeps: int, max_norm: float) -> "FlowSolution":
    """Classical RK4 with ``substeps`` equal steps between consecutive save times."""

    def interval(y, t01):
        h = (t01[1] - t01[0]) / substeps
        y = jax.lax.fori_loop(0, substeps, lambda i, y: rk4_step(field, y, h), y)
        return y, y

    _, ys = jax.lax.scan(interval, theta0, jnp.stack([ts[:-1], ts[1:]], axis=1))
    ys = _tmap(lambda a, b: jnp.concatenate([a[None], b]), theta0, ys)
    return _solution(ts, ys, max_norm)


# ------------------------------------------------------------------------------------ integrators
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
    theta0: Params,
    ts: ArrayLike,
    *,
    dt: float | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 1 << 16,
    max_norm: float = 1e8,
) -> FlowSolution:
    """Integrate :math:`\\dot y = \\mathrm{field}(y)` from ``y(ts[0]) = theta0`` and save at ``ts``, with diffrax.

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
      theta0: initial state (a pytree: parameters, or parameters and velocities).
      ts: increasing save times; ``ts[0]`` is the initial time.
      dt: fixed step size, or ``None`` for adaptive stepping.
      rtol, atol: tolerances of the adaptive controller.
      max_steps: static bound on the number of solver steps.
      max_norm: bound beyond which the flow counts as diverged.

    Returns:
      A :class:`FlowSolution`.

    Raises:
      ValueError: for non-increasing ``ts`` or a non-positive ``dt`` (when concrete).

    Example (gradient flow of a quadratic, against its exact solution e^{-3t}):

    >>> import jax.numpy as jnp
    >>> sol = integrate(lambda th: -3.0 * th, jnp.array([1.0]), jnp.array([0.0, 1.0]))
    >>> round(float(sol.ys[-1, 0]), 8), round(float(jnp.exp(-3.0)), 8)
    (0.04978707, 0.04978707)
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
        y0=theta0,
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
    return _solution(ts, ys, max_norm)


def integrate_complex(field: Field, theta0: Params, ts: ArrayLike, *, dt: float | None = None,
                      substeps: int | None = None, max_steps: int = 1 << 16,
                      max_norm: float = 1e8) -> FlowSolution:
    r"""Integrate a complex flow :math:`\dot\theta = f(\theta)` with fixed steps.

    Two methods, chosen by which step argument is given:

    * ``dt``: :func:`integrate` (diffrax, Tsit5, fixed steps ``dt``) on the real pair
      :math:`(x, y)`, :math:`\theta = x + iy`, with :math:`\dot x = \mathrm{Re}\,f`,
      :math:`\dot y = \mathrm{Im}\,f` — how diffrax recommends handling complex states;
    * ``substeps``: the classical fourth-order Runge–Kutta method with ``substeps`` equal steps
      between consecutive save times, on the complex state directly, in a ``lax.scan``. No diffrax:
      it compiles several times faster, which matters when a field is expensive to trace (a
      dense Hessian and ``eig`` per evaluation).

    A PF field is stiff near :math:`\eta\mu = 1` (rate :math:`\log|1-\eta\mu|/\eta`): take the
    step well below :math:`1/|\kappa|` and check that halving it leaves the result unchanged.
    States that become non-finite or larger than ``max_norm`` are reported in ``diverged_at`` and
    frozen, as in :func:`integrate`.

    Args:
      field: ``theta -> theta_dot`` on complex pytrees (e.g. :func:`~dyncore.principal.principal_field`).
      theta0: start (real leaves are promoted to complex).
      ts: save times (increasing).
      dt: Tsit5 step (exactly one of ``dt`` and ``substeps``).
      substeps: RK4 steps per save interval (a static positive integer).
      max_steps: bound on the Tsit5 steps.
      max_norm: bound beyond which the flow counts as diverged.

    Returns:
      A :class:`FlowSolution` whose ``ys`` are complex.

    Raises:
      ValueError: unless exactly one of ``dt`` and ``substeps`` is given.
    """
    if (dt is None) == (substeps is None):
        raise ValueError("give exactly one of dt (Tsit5) and substeps (RK4)")
    theta0 = _tmap(as_complex, theta0)
    if substeps is not None:
        substeps = check_positive_int("substeps", substeps)
        return _rk4(field, theta0, jnp.asarray(ts, dtype=jnp.result_type(float)), substeps, max_norm)

    def split(z):
        return _tmap(jnp.real, z), _tmap(jnp.imag, z)

    def join(re, im):
        return _tmap(lambda a, b: a + 1j * b, re, im)

    def real_field(y):
        return split(field(join(*y)))

    sol = integrate(real_field, split(theta0), ts, dt=dt, max_steps=max_steps, max_norm=max_norm)
    return FlowSolution(sol.ts, join(*sol.ys), sol.diverged_at)


def integrate_flows(fields: dict[str, Field], theta0: Params, ts: ArrayLike, *,
                    dt: float | None = None, substeps: int | None = None,
                    max_steps: int = 1 << 16, max_norm: float = 1e8) -> FlowSolution:
    """Integrate several complex-capable flows from the same start side by side, in one solve.

    The state is a dict ``{name: theta}`` and the joint field applies ``fields[name]`` to each
    entry, so one compilation serves every flow (see :func:`integrate_complex` for the methods:
    Tsit5 with ``dt``, RK4 with ``substeps``). Use it to compare flows, e.g. the
    :func:`~dyncore.principal.alpha_field` family, with GD.

    Each flow is judged on its own: a flow whose state becomes non-finite or larger than
    ``max_norm`` stops moving (its field is switched off) and is frozen at its last good save
    time, while the other flows go on unchanged.

    Returns:
      A :class:`FlowSolution` whose ``ys`` is a dict of complex paths; ``diverged_at``
      is the first save index at which any of the flows left the bounds (``-1``: none did).

    Example (two flows side by side; the second blows up and is frozen, the first goes on):

    >>> import jax.numpy as jnp
    >>> sol = integrate_flows({"decay": lambda y: -y, "blowup": lambda y: y**2}, jnp.array([1.0]),
    ...                       jnp.array([0.0, 0.5, 2.0]), substeps=200)
    >>> round(float(sol.ys["decay"][-1, 0].real), 6), int(sol.diverged_at)
    (0.135335, 2)
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    y0s = {name: theta0 for name in fields}

    norm2 = sq_norm

    def guarded(f):
        def g(y):  # a flow that has left the bounds, or whose field is not finite, stops
            v, sq = f(y), norm2(y)
            ok = jnp.isfinite(sq) & (sq <= max_norm**2) & jnp.isfinite(norm2(v))
            return _tmap(lambda a: jnp.where(ok, a, jnp.zeros_like(a)), v)

        return g

    guards = {name: guarded(f) for name, f in fields.items()}

    def joint(y):
        return {name: g(y[name]) for name, g in guards.items()}

    sol = integrate_complex(joint, y0s, ts, dt=dt, substeps=substeps, max_steps=max_steps,
                            max_norm=jnp.inf)
    n_save = sol.ts.shape[0]
    frozen = {name: frozen_after_bad(path, max_norm) for name, path in sol.ys.items()}
    ys = {name: path for name, (path, _) in frozen.items()}
    earliest = jnp.min(jnp.stack([n_good for _, n_good in frozen.values()]))  # n_save: none left
    diverged_at = jnp.where(sol.diverged_at >= 0, jnp.minimum(sol.diverged_at, earliest), earliest)
    return FlowSolution(sol.ts, ys, jnp.where(diverged_at < n_save, diverged_at, -1))


def integrate_pieces(
    field: PieceField, theta0: Params, n_steps: int, *, eta, substeps: int = 1, max_norm: float = 1e8
) -> FlowSolution:
    r"""Integrate a piecewise field over :math:`[0, N\eta]`, one piece :math:`[n\eta, (n+1)\eta]` at a time.

    On piece :math:`n` the field is ``field(theta, n)``; it jumps at :math:`t = n\eta`, so no step
    may straddle a boundary. Each piece is integrated with classical RK4 in ``substeps`` fixed
    steps of :math:`\eta/\mathrm{substeps}` inside one ``lax.scan`` over :math:`n`: its error,
    :math:`O(\eta^4)` at a fixed time, is far below the :math:`O(\eta^2)` being measured (on the
    book's examples one and two sub-steps give the same tracking errors to four digits; raise
    ``substeps`` for stiff fields, e.g. :math:`\varepsilon` tiny near a minimum). A hand-written
    RK4 is used rather than :func:`integrate` per piece, because one
    ``diffeqsolve`` per piece inside the scan costs more to trace, compile and run than the four
    field evaluations it replaces, and an adaptive solver must not cross the boundaries anyway.

    Args:
      field: piecewise field ``field(theta, n)``.
      theta0: :math:`\tilde\theta(0)`.
      eta: step size (traced is fine).
      n_steps: number of pieces :math:`N` (static: it fixes the output shape).
      substeps: RK4 steps per piece.
      max_norm: bound beyond which the flow counts as diverged.

    Returns:
      A :class:`FlowSolution` at the times :math:`n\eta`, :math:`n = 0..N`: ``ys`` holds
      :math:`\tilde\theta(n\eta)` stacked on a leading axis, ``diverged_at`` the first ``n`` whose
      state was non-finite or beyond ``max_norm`` (``-1``: none).

    Raises:
      ValueError: for ``eta <= 0`` or non-positive ``n_steps``/``substeps``.

    >>> import jax.numpy as jnp
    >>> sol = integrate_pieces(lambda th, n: -th / (n + 1.0), jnp.array(1.0), 2, eta=1.0, substeps=50)
    >>> [round(float(y), 6) for y in sol.ys]   # exactly 1, e^{-1}, e^{-1 - 1/2}
    [1.0, 0.367879, 0.22313]
    """
    check_hparams(eta=eta)
    n_steps = check_positive_int("n_steps", n_steps)
    substeps = check_positive_int("substeps", substeps)
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")

    def body(y, n):
        y = rk4_piece(field, y, n, eta=eta, substeps=substeps)
        return y, y

    _, path = jax.lax.scan(body, theta0, jnp.arange(n_steps))
    path = _tmap(lambda a, b: jnp.concatenate([a[None], b]), theta0, path)
    ts = eta * jnp.arange(n_steps + 1, dtype=jnp.result_type(float))
    return _solution(ts, path, max_norm)

