"""Every discrete optimizer of the book, as an optax transformation with the papers' conventions.

Every optimizer is an ``optax.GradientTransformation`` built from optax's own pieces; the
constructors only fix the conventions used in the book:

* weight decay :math:`\\lambda` is *coupled* (L2): the gradient is :math:`\\nabla L + \\lambda\\theta`,
  i.e. :math:`\\theta \\mapsto \\theta - \\eta(\\nabla L(\\theta) + \\lambda \\theta)` for GD;
* heavy ball: :math:`\\theta_{k+1} = \\theta_k - \\eta\\,g_k + \\beta(\\theta_k - \\theta_{k-1})`,
  started at rest (:math:`\\theta_{-1} = \\theta_0`). optax's ``trace`` accumulates
  :math:`m_{k+1} = g_k + \\beta m_k` and steps :math:`-\\eta m_{k+1}`, which is the same recursion;
* RMSProp (Cattaneo et al. 2023): :math:`\\nu_{k+1} = \\rho\\nu_k + (1-\\rho) g_k^2`,
  :math:`\\theta_{k+1} = \\theta_k - \\eta\\, g_k / \\sqrt{\\nu_{k+1} + \\varepsilon}` with
  :math:`\\nu_0 = 0`, no bias correction, :math:`\\varepsilon` inside the root (optax's
  ``eps_in_sqrt=True``; PyTorch puts it outside, ``eps_inside=False`` here);
* Adam (Cattaneo et al. 2023): bias-corrected moments and :math:`\\varepsilon` inside the root,
  :math:`\\theta_{k+1} = \\theta_k - \\eta\\,\\hat m_{k+1}/\\sqrt{\\hat\\nu_{k+1} + \\varepsilon}`, which is
  ``optax.adam(eta, b1=beta, b2=rho, eps=0, eps_root=eps)``. (optax's and PyTorch's default put
  :math:`\\varepsilon` outside the root: ``eps_inside=False``.)

* AdamW: decoupled weight decay (:func:`adamw`), an extension of the paper's analysis;
* DAL: the drift-adjusted learning rate of Rosca et al. (2023) (:func:`dal`, :func:`dal_rate`);
* the scalar RMSProp on the unit sphere that GD with weight decay implements on a
  scale-invariant layer (Tanaka & Kunin 2021; :func:`rmsprop_on_sphere`).

Hyper-parameters are keyword-only, except the learning rate, which comes first as in optax.
They may be traced JAX values, so a jitted function of :math:`\\eta, \\lambda, \\ldots`
that builds its optimizer inside is compiled once and then reused for every slider value. :func:`dyncore.runner.run` runs any of them.

>>> import jax.numpy as jnp
>>> import optax
>>> opt = heavy_ball(0.1, beta=0.9, lam=0.01)
>>> theta = jnp.array([1.0])
>>> updates, state = opt.update(jnp.array([2.0]), opt.init(theta), theta)
>>> round(float(optax.apply_updates(theta, updates)[0]), 6)    # 1 - 0.1 (2 + 0.01)
0.799
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .curvature import hvp, with_decay
from .trees import norm, tmap
from .validation import check_hparams, is_concrete

__all__ = [
    "gd",
    "heavy_ball",
    "rmsprop",
    "adam",
    "adamw",
    "dal",
    "dal_rate",
    "scale_by_dal",
    "ScaleByDalState",
    "with_momentum",
    "rmsprop_on_sphere",
    "RMSPropOnSphereState",
]

Params = Any
Loss = Callable[[Params], jax.Array]

_tmap = tmap


def _with_weight_decay(tx: optax.GradientTransformation, lam) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(lam), tx)


def gd(eta, *, lam=0.0) -> optax.GradientTransformation:
    """Gradient descent with weight decay: :math:`\\theta_{k+1} = \\theta_k - \\eta(g_k + \\lambda\\theta_k)`.

    With a stochastic ``grad_fn`` in :func:`dyncore.runner.run` this is SGD with weight decay.

    Raises:
      ValueError: if ``eta <= 0`` or ``lam < 0``.

    Example:

    >>> import jax.numpy as jnp
    >>> opt = gd(0.1, lam=0.5)
    >>> theta = jnp.array([2.0])
    >>> opt.update(jnp.array([1.0]), opt.init(theta), theta)[0].tolist()    # -0.1 (1 + 0.5 * 2)
    [-0.2]
    """
    check_hparams(eta=eta, lam=lam)
    return _with_weight_decay(optax.sgd(eta), lam)


def heavy_ball(eta, *, beta, lam=0.0, decoupled: bool = False) -> optax.GradientTransformation:
    """Heavy-ball momentum: :math:`\\theta_{k+1} = \\theta_k - \\eta(g_k + \\lambda\\theta_k) + \\beta(\\theta_k - \\theta_{k-1})`.

    With the default *coupled* weight decay, :math:`\\lambda\\theta_k` enters the momentum buffer
    (PyTorch ``SGD(weight_decay=lam)``): :math:`m_{k+1} = \\beta m_k + g_k + \\lambda\\theta_k`,
    :math:`\\theta_{k+1} = \\theta_k - \\eta m_{k+1}`, i.e.
    ``optax.chain(optax.add_decayed_weights(lam), optax.sgd(eta, momentum=beta))``.

    With ``decoupled=True`` the decay bypasses the buffer (decoupled weight decay, multiplied by
    the learning rate as in PyTorch's AdamW):

    .. math:: m_{k+1} = \\beta m_k + g_k, \\qquad
              \\theta_{k+1} = \\theta_k - \\eta\\, m_{k+1} - \\eta\\lambda\\,\\theta_k ,

    i.e. ``optax.chain(optax.trace(beta), optax.add_decayed_weights(lam),
    optax.scale_by_learning_rate(eta))``, the pattern of ``optax.adamw``. The two agree for ``beta = 0``; with momentum, coupled decay is amplified
    by about :math:`1/(1-\\beta)` and decoupled decay is not (Tanaka & Kunin 2021, Eq. (3), assume
    coupled decay).

    Raises:
      ValueError: if ``eta <= 0``, ``lam < 0`` or ``beta`` is not in ``[0, 1)``.

    Example (the momentum adds beta times the previous step):

    >>> import jax.numpy as jnp
    >>> import optax
    >>> opt, theta = heavy_ball(0.1, beta=0.5), jnp.array([0.0])
    >>> state = opt.init(theta)
    >>> for _ in range(2):
    ...     updates, state = opt.update(jnp.array([1.0]), state, theta)
    ...     theta = optax.apply_updates(theta, updates)
    >>> round(float(theta[0]), 6)          # -0.1, then -0.1 - 0.1 - 0.5 * 0.1
    -0.25
    """
    check_hparams(eta=eta, beta=beta, lam=lam)
    if decoupled:
        return optax.chain(
            optax.trace(decay=beta), optax.add_decayed_weights(lam), optax.scale_by_learning_rate(eta)
        )
    return _with_weight_decay(optax.sgd(eta, momentum=beta), lam)


def rmsprop(eta, *, rho, eps=1e-8, lam=0.0, eps_inside: bool = True) -> optax.GradientTransformation:
    """RMSProp without bias correction, :math:`\\nu_0 = 0` (Cattaneo et al. 2023, Eq. (1)).

    .. math:: \\nu_{k+1} = \\rho\\,\\nu_k + (1-\\rho)\\,g_k^{2}, \\qquad
              \\theta_{k+1} = \\theta_k - \\eta\\,\\frac{g_k}{\\sqrt{\\nu_{k+1} + \\varepsilon}}

    Args:
      eta: learning rate.
      rho: second-moment decay, in ``[0, 1)``.
      eps: :math:`\\varepsilon > 0`.
      lam: coupled weight decay.
      eps_inside: :math:`\\varepsilon` inside the square root (the paper, optax default) or outside,
        :math:`g/(\\sqrt{\\nu} + \\varepsilon)` (PyTorch).

    Example (the first step of RMSProp moves every coordinate by about eta/sqrt(1 - rho)):

    >>> import jax.numpy as jnp
    >>> opt, theta = rmsprop(0.01, rho=0.99), jnp.zeros(2)
    >>> [round(float(u), 4) for u in opt.update(jnp.array([3.0, -0.2]), opt.init(theta), theta)[0]]
    [-0.1, 0.1]
    """
    check_hparams(eta=eta, rho=rho, eps=eps, lam=lam)
    return _with_weight_decay(optax.rmsprop(eta, decay=rho, eps=eps, eps_in_sqrt=eps_inside), lam)


def adam(eta, *, beta, rho, eps=1e-8, lam=0.0, eps_inside: bool = True) -> optax.GradientTransformation:
    """Adam with bias correction (Cattaneo et al. 2023, Eq. (2)).

    .. math:: m_{k+1} = \\beta m_k + (1-\\beta) g_k,\\quad \\nu_{k+1} = \\rho\\nu_k + (1-\\rho) g_k^2,\\quad
              \\theta_{k+1} = \\theta_k - \\eta \\frac{m_{k+1}/(1-\\beta^{k+1})}{\\sqrt{\\nu_{k+1}/(1-\\rho^{k+1}) + \\varepsilon}}

    ``eps_inside=False`` gives optax's and PyTorch's default, :math:`\\hat m/(\\sqrt{\\hat\\nu} + \\varepsilon)`.

    Example (bias correction: the first step is eta * sign(g)):

    >>> import jax.numpy as jnp
    >>> opt, theta = adam(0.01, beta=0.9, rho=0.999), jnp.zeros(2)
    >>> [round(float(u), 6) for u in opt.update(jnp.array([3.0, -0.2]), opt.init(theta), theta)[0]]
    [-0.01, 0.01]
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps, lam=lam)
    if eps_inside:
        tx = optax.adam(eta, b1=beta, b2=rho, eps=0.0, eps_root=eps)
    else:
        tx = optax.adam(eta, b1=beta, b2=rho, eps=eps, eps_root=0.0)
    return _with_weight_decay(tx, lam)


def adamw(eta, *, beta, rho, eps, lam) -> optax.GradientTransformation:
    r"""AdamW (decoupled weight decay) with :math:`\varepsilon` inside the root: not in the paper.

    .. math:: \theta^{(n+1)} = \theta^{(n)} - \eta\lambda\,\theta^{(n)}
              - \eta\,\frac{\hat m^{(n+1)}}{\sqrt{\hat\nu^{(n+1)} + \varepsilon}},

    with the bias-corrected moments of :func:`adam`. This is
    ``optax.adamw(eta, b1=beta, b2=rho, eps=0, eps_root=eps, weight_decay=lam)`` (PyTorch's
    ``AdamW`` has the same decay, :math:`\varepsilon` outside the root). Coupled L2 decay
    (:func:`adam` with ``lam``) is covered by the paper with :math:`E` replaced by
    :math:`E + \tfrac\lambda2\|\theta\|^2`; decoupled decay is the extension of :func:`dyncore.adaptive.adamw_field`.

    Raises:
      ValueError: for hyper-parameters outside their ranges.

    Example (the decay acts on the parameters, outside the adaptive scaling):

    >>> import jax.numpy as jnp
    >>> opt, theta = adamw(0.01, beta=0.9, rho=0.999, eps=1e-8, lam=0.1), jnp.array([2.0])
    >>> round(float(opt.update(jnp.array([3.0]), opt.init(theta), theta)[0][0]), 6)   # -0.01 - 0.01 * 0.1 * 2
    -0.012
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps, lam=lam)
    return optax.adamw(eta, b1=beta, b2=rho, eps=0.0, eps_root=eps, weight_decay=lam)


def _check_dal(p, max_lr) -> None:
    for name, value, ok in (("p", p, lambda x: x >= 0), ("max_lr", max_lr, lambda x: x > 0)):
        if is_concrete(value) and not (np.isfinite(float(value)) and ok(float(value))):
            bound = ">= 0" if name == "p" else "> 0"
            raise ValueError(f"{name} must be {bound}, got {float(value):g}")


def _dal_from_grad(loss: Loss, params: Params, g: Params, p, max_lr) -> jax.Array:
    gn = norm(g)
    ghat = _tmap(lambda x: x / jnp.where(gn > 0, gn, 1.0), g)
    hg = hvp(loss, params, ghat)
    v = norm(hg)
    return 2.0 / jnp.maximum(v**p, 2.0 / max_lr)


def dal_rate(loss: Loss, params: Params, *, p=1.0, max_lr=5.0) -> jax.Array:
    r"""The drift-adjusted learning rate, Rosca et al. (2023) Eq. (18)–(19), capped.

    .. math:: \eta_p(\theta) = \min\Big(\frac{2}{\|H\hat g\|^{p}},\ \eta_{\max}\Big),
              \qquad \hat g = g/\|g\|,

    computed with one forward-over-reverse Hessian-vector product. At :math:`g = 0` the rate is
    the cap for :math:`p > 0`; for :math:`p = 0` it is :math:`\min(2, \eta_{\max})` everywhere.
    See :func:`~dyncore.optimizers.scale_by_dal` for the caveats.

    Args:
      loss: scalar loss (include any weight decay in it).
      params: the point.
      p: the power :math:`p \ge 0` (DAL-:math:`p`; ``p=1`` is DAL).
      max_lr: cap :math:`\eta_{\max} > 0` (the released code uses 5).

    Example (on a quadratic with Hessian 4, DAL-1 takes eta = 2/4):

    >>> import jax.numpy as jnp
    >>> float(dal_rate(lambda th: 2.0 * jnp.sum(th**2), jnp.array([1.0, -1.0])))
    0.5
    """
    _check_dal(p, max_lr)
    return _dal_from_grad(loss, params, jax.grad(loss)(params), p, max_lr)


class ScaleByDalState(NamedTuple):
    """State of :func:`scale_by_dal`: ``lr``, the rate used at the last step."""

    lr: jax.Array


def scale_by_dal(loss: Loss, *, p=1.0, max_lr=5.0) -> optax.GradientTransformation:
    r"""Optax transformation multiplying the gradient by the drift-adjusted rate :func:`dal_rate`.

    ``update(grads, state, params)`` needs ``params`` and expects ``grads`` to be the gradient of
    ``loss`` at ``params``; it spends one Hessian-vector product on :math:`H\hat g` and returns
    :math:`\eta_p(\theta)\,g` (a positive scaling: chain it with ``optax.scale(-1)``, or use
    :func:`dal`). The rate used is kept in the state.

    Caveats (Rosca et al. 2023, Section 6; the book's chapter on the principal flow):

    * on a quadratic :math:`\|H\hat g\| \le \mu_{\max}`, so DAL-1 always has
      :math:`\eta\mu_{\max} \ge 2`, with equality only when :math:`g \parallel u_0`: the component
      along the top eigenvector never shrinks and the loss does not go to zero;
    * DAL-1 is invariant under :math:`L \to cL`; DAL-:math:`p` with :math:`p \ne 1` is not
      (:math:`\eta_p \propto c^{-p}` while the stable step scales as :math:`c^{-1}`);
    * the cap matters: near a critical point :math:`H\hat g` can be small;
    * the momentum variant's constant (Eq. 21 prints :math:`1/(2\|\cdot\|)`) is uncertain.

    Example:

    >>> import jax.numpy as jnp
    >>> loss = lambda th: 2.0 * jnp.sum(th**2)
    >>> tx, theta = scale_by_dal(loss), jnp.array([1.0])
    >>> float(tx.update(jnp.array([4.0]), tx.init(theta), theta)[1].lr)
    0.5
    """
    _check_dal(p, max_lr)

    def init_fn(params):
        del params
        return ScaleByDalState(lr=jnp.zeros(()))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_dal needs params in update (for the Hessian-vector product)")
        lr = _dal_from_grad(loss, params, updates, p, max_lr)
        return _tmap(lambda u: lr * u, updates), ScaleByDalState(lr=lr)

    return optax.GradientTransformation(init_fn, update_fn)


def dal(loss: Loss, *, p=1.0, beta=0.0, lam=0.0, max_lr=5.0) -> optax.GradientTransformation:
    r"""GD (or heavy ball) with the drift-adjusted learning rate, as an optax optimizer.

    .. math:: m_{k+1} = \beta m_k + \eta_p(\theta_k)\, g_k, \qquad
              \theta_{k+1} = \theta_k - m_{k+1},

    with :math:`g = \nabla L_\lambda` and :math:`\eta_p` from :func:`dal_rate` on :math:`L_\lambda`
    (Rosca et al. 2023, Eq. 18–20). ``beta = 0`` is DAL-:math:`p` for GD. Use with
    :func:`dyncore.runner.run`.

    Raises:
      ValueError: for ``p < 0``, ``max_lr <= 0``, ``beta`` outside ``[0, 1)`` or ``lam < 0``.

    Example (DAL-1 on a quadratic jumps to the mirror point, at the edge of stability):

    >>> import jax.numpy as jnp
    >>> from dyncore.runner import run
    >>> traj = run(dal(lambda th: 2.0 * jnp.sum(th**2)), lambda th: 2.0 * jnp.sum(th**2), jnp.array([1.0]), 2)
    >>> traj.params[:, 0].tolist()
    [1.0, -1.0, 1.0]
    """
    check_hparams(beta=beta, lam=lam)
    return optax.chain(
        optax.add_decayed_weights(lam),
        scale_by_dal(with_decay(loss, lam), p=p, max_lr=max_lr),
        optax.trace(decay=beta),
        optax.scale(-1.0),
    )


def with_momentum(optimizer: optax.GradientTransformation, momentum0: Params) -> optax.GradientTransformation:
    """``optimizer`` whose momentum buffer starts at ``momentum0`` instead of zero.

    Every ``optax.TraceState`` in the initial state gets ``trace = momentum0``; with
    :func:`heavy_ball` the first step is then
    :math:`q_1 = q_0 - \\eta(\\beta b_0 + \\nabla f(q_0) + \\lambda q_0)`. A charge that starts at
    zero stays zero under some symmetries (rotation), so a non-zero buffer is how to see it decay.

    Example:

    >>> import jax.numpy as jnp
    >>> opt, theta = with_momentum(heavy_ball(0.1, beta=0.5), jnp.array([2.0])), jnp.array([0.0])
    >>> round(float(opt.update(jnp.array([1.0]), opt.init(theta), theta)[0][0]), 6)   # -0.1 (0.5 * 2 + 1)
    -0.2
    """
    b0 = _tmap(jnp.asarray, momentum0)

    def init(params):
        state = optimizer.init(params)
        is_trace = lambda x: isinstance(x, optax.TraceState)  # noqa: E731
        return jax.tree_util.tree_map(
            lambda s: s._replace(trace=_tmap(lambda t, b: jnp.asarray(b, t.dtype), s.trace, b0)) if is_trace(s) else s,
            state,
            is_leaf=is_trace,
        )

    return optax.GradientTransformation(init, optimizer.update)



class RMSPropOnSphereState(NamedTuple):
    """State of :func:`rmsprop_on_sphere`: the scalar accumulator ``G`` used by the next step."""

    G: jax.Array


def rmsprop_on_sphere(eta, *, rho, G0) -> optax.GradientTransformation:
    """Scalar RMSProp on the unit sphere, in the convention of Tanaka & Kunin (2021):

    .. math:: u_{n+1} = \\mathrm{normalize}\\Big(u_n - \\frac{\\eta}{\\sqrt{G_n}}\\nabla f(u_n)\\Big), \\qquad
              G_{n+1} = \\rho\\, G_n + (1-\\rho)\\,\\|\\nabla f(u_n)\\|^2 .

    The accumulator is one scalar (the norm of the whole gradient), has no :math:`\\varepsilon` and is
    used *before* its update: this is not ``optax.rmsprop`` (per coordinate, updated first). The
    parameters are a unit vector (start :func:`dyncore.runner.run` from one);
    :func:`dyncore.scale_invariance.sphere_rmsprop` runs it and records :math:`G`.

    Raises:
      ValueError: for ``eta <= 0``, ``rho`` outside ``[0, 1)`` or ``G0 <= 0``.

    Example:

    >>> import jax.numpy as jnp
    >>> tx, u = rmsprop_on_sphere(0.1, rho=0.9, G0=1.0), jnp.array([1.0, 0.0])
    >>> updates, state = tx.update(jnp.array([0.0, -1.0]), tx.init(u), u)
    >>> round(float(jnp.linalg.norm(u + updates)), 6), round(float(state.G), 6)    # on the sphere; 0.9 + 0.1
    (1.0, 1.0)
    """
    check_hparams(eta=eta, rho=rho)
    if is_concrete(G0) and not float(G0) > 0:
        raise ValueError(f"G0 must be > 0, got {float(G0):g}")

    def init_fn(params):
        return RMSPropOnSphereState(G=jnp.asarray(G0, jnp.result_type(params)))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("rmsprop_on_sphere needs params in update (it normalizes the new point)")
        v = params - eta * grads / jnp.sqrt(state.G)
        G = rho * state.G + (1 - rho) * jnp.sum(grads**2)
        return v / jnp.linalg.norm(v) - params, RMSPropOnSphereState(G=G)

    return optax.GradientTransformation(init_fn, update_fn)
