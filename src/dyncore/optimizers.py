"""Discrete optimizers with the papers' conventions, and one trajectory runner for all of them.

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

Hyper-parameters may be traced JAX values, so a jitted function of :math:`\\eta, \\lambda, \\ldots`
that builds its optimizer inside is compiled once and then reused for every slider value.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .validation import check_hparams, check_positive_int

__all__ = [
    "gd",
    "heavy_ball",
    "rmsprop",
    "adam",
    "Trajectory",
    "DivergenceError",
    "run",
    "run_chains",
]

Params = Any


def _with_weight_decay(tx: optax.GradientTransformation, lam) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(lam), tx)


def gd(eta, lam=0.0) -> optax.GradientTransformation:
    """Gradient descent with weight decay: :math:`\\theta_{k+1} = \\theta_k - \\eta(g_k + \\lambda\\theta_k)`.

    With a stochastic ``grad_fn`` in :func:`run` this is SGD with weight decay.

    Raises:
      ValueError: if ``eta <= 0`` or ``lam < 0``.
    """
    check_hparams(eta=eta, lam=lam)
    return _with_weight_decay(optax.sgd(eta), lam)


def heavy_ball(eta, beta, lam=0.0, *, decoupled: bool = False) -> optax.GradientTransformation:
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
    """
    check_hparams(eta=eta, beta=beta, lam=lam)
    if decoupled:
        return optax.chain(
            optax.trace(decay=beta), optax.add_decayed_weights(lam), optax.scale_by_learning_rate(eta)
        )
    return _with_weight_decay(optax.sgd(eta, momentum=beta), lam)


def rmsprop(eta, rho, eps=1e-8, lam=0.0, *, eps_inside: bool = True) -> optax.GradientTransformation:
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
    """
    check_hparams(eta=eta, rho=rho, eps=eps, lam=lam)
    return _with_weight_decay(optax.rmsprop(eta, decay=rho, eps=eps, eps_in_sqrt=eps_inside), lam)


def adam(eta, beta, rho, eps=1e-8, lam=0.0, *, eps_inside: bool = True) -> optax.GradientTransformation:
    """Adam with bias correction (Cattaneo et al. 2023, Eq. (2)).

    .. math:: m_{k+1} = \\beta m_k + (1-\\beta) g_k,\\quad \\nu_{k+1} = \\rho\\nu_k + (1-\\rho) g_k^2,\\quad
              \\theta_{k+1} = \\theta_k - \\eta \\frac{m_{k+1}/(1-\\beta^{k+1})}{\\sqrt{\\nu_{k+1}/(1-\\rho^{k+1}) + \\varepsilon}}

    ``eps_inside=False`` gives optax's and PyTorch's default, :math:`\\hat m/(\\sqrt{\\hat\\nu} + \\varepsilon)`.
    """
    check_hparams(eta=eta, beta=beta, rho=rho, eps=eps, lam=lam)
    if eps_inside:
        tx = optax.adam(eta, b1=beta, b2=rho, eps=0.0, eps_root=eps)
    else:
        tx = optax.adam(eta, b1=beta, b2=rho, eps=eps, eps_root=0.0)
    return _with_weight_decay(tx, lam)


class Trajectory(NamedTuple):
    """The iterates of :func:`run`.

    Attributes:
      params: the iterates :math:`\\theta_0, \\theta_e, \\theta_{2e}, \\ldots, \\theta_n` (every ``e``-th
        step, ``e = every`` of :func:`run`, 1 by default), stacked on a leading axis of length
        ``n_steps // every + 1``. After a divergence the last finite iterate is repeated (never NaN).
      loss: the full-batch loss at the same iterates (NaN-free for the same reason); ``None`` for
        a stochastic run without a loss (``run(optimizer, None, ...)``).
      diverged_at: the first step ``k`` whose iterate was non-finite, beyond ``max_norm``, or had a
        non-finite loss (an int array; ``0`` if the start itself is bad), or ``-1`` when the run
        stayed bounded.
      grads: with ``run(..., record_grads=True)``, the gradient each saved iterate but the last
        stepped with (the minibatch gradient of a stochastic run), stacked like ``params``
        without the final entry; else ``None``. After a divergence it is the gradient at the
        repeated last good iterate.
    """

    params: Params
    loss: jax.Array | None
    diverged_at: jax.Array
    grads: Params | None = None

    @property
    def diverged(self) -> jax.Array:
        """Whether the run diverged (a bool array, batched under ``vmap``)."""
        return self.diverged_at >= 0

    def status(self) -> str:
        """``"converged or bounded"``-style message for a single (un-batched) run."""
        k = int(self.diverged_at)
        return f"diverged at step {k}" if k >= 0 else "stayed bounded"

    def raise_if_diverged(self) -> "Trajectory":
        """Return ``self``, or raise :class:`DivergenceError` naming the step (single run)."""
        k = int(self.diverged_at)
        if k >= 0:
            raise DivergenceError(k)
        return self


class DivergenceError(RuntimeError):
    """A run left every bound: its iterates became non-finite or too large at step ``step``."""

    def __init__(self, step: int):
        super().__init__(f"the run diverged at step {step}")
        self.step = step


def _tree_ok(tree, max_norm) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    sq = sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in leaves)
    return jnp.isfinite(sq) & (sq <= max_norm**2)


def run(
    optimizer: optax.GradientTransformation,
    loss: Callable[[Params], jax.Array] | None,
    params0: Params,
    n_steps: int,
    *,
    grad_fn: Callable[[Params, jax.Array], Params] | None = None,
    key: jax.Array | None = None,
    max_norm: float = 1e8,
    every: int = 1,
    record_grads: bool = False,
) -> Trajectory:
    """Run ``n_steps`` of ``optimizer`` from ``params0`` with one ``lax.scan``; report divergence.

    Deterministic by default (the gradient of ``loss``). With ``grad_fn(params, key)`` (e.g. from
    :func:`dyncore.problems.minibatch_grad`) each step draws its own key from ``key`` by
    ``jax.random.split``, so the run is stochastic and reproducible.

    Divergence: as soon as an iterate is non-finite or its norm exceeds ``max_norm``, the step
    is recorded in ``diverged_at`` and the iterates are frozen at the last good value, so that no
    NaN ever leaves this function. The function is pure and jit/vmap-friendly: ``vmap`` it over a
    grid of hyper-parameters (build the optimizer inside the mapped function) or over keys
    (:func:`run_chains`).

    Args:
      optimizer: an optax transformation (:func:`gd`, :func:`heavy_ball`, ...).
      loss: full-batch loss, evaluated at every iterate. Without ``grad_fn`` the loss and the
        gradient of an iterate come from one forward-backward pass (``jax.value_and_grad``).
        With ``grad_fn`` it may be ``None``: no loss is evaluated (a stochastic run then costs its
        minibatch gradients only), ``Trajectory.loss`` is ``None``, and divergence is judged
        from the iterates alone.
      params0: starting point (pytree).
      n_steps: number of steps (static).
      grad_fn: optional stochastic gradient ``grad_fn(params, key)``.
      key: PRNG key, required with ``grad_fn``.
      max_norm: bound on the parameter norm beyond which the run counts as diverged.
      every: keep every ``every``-th iterate only (static; must divide ``n_steps``). Memory then
        grows like ``n_steps / every``: use ``every=n_steps`` to keep just the start and the end,
        e.g. in a ``vmap`` over a large grid of hyper-parameters. ``diverged_at`` stays exact.
      record_grads: also return the gradients the steps used (``Trajectory.grads``), e.g. the
        minibatch gradients of a stochastic run, which would otherwise have to be recomputed.

    Returns:
      A :class:`Trajectory`.

    Raises:
      ValueError: for a non-positive ``n_steps``, ``every`` or ``max_norm``, an ``every`` that
        does not divide ``n_steps``, a ``grad_fn`` without ``key``, or neither ``loss`` nor
        ``grad_fn``.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    every = check_positive_int("every", every)
    if n_steps % every:
        raise ValueError(f"every must divide n_steps, got every={every}, n_steps={n_steps}")
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if grad_fn is not None and key is None:
        raise ValueError("key is required when grad_fn is given (a stochastic run)")
    if loss is None and grad_fn is None:
        raise ValueError("loss is required unless grad_fn is given")
    without_loss = loss is None
    if without_loss:  # a constant stands in for the loss; XLA drops it

        def loss(params):
            return jnp.zeros((), jnp.result_type(float))

    keys = jax.random.split(key, n_steps) if key is not None else jnp.zeros((n_steps,))
    if grad_fn is None:  # one forward-backward pass per iterate gives its loss and gradient
        evaluate = jax.value_and_grad(loss)
    else:  # the gradient comes from grad_fn at each step; only the loss is evaluated

        def evaluate(params):
            return loss(params), None

    def step(carry, inp):
        k, step_key = inp
        params, opt_state, (value, g), div = carry
        if grad_fn is not None:
            g = grad_fn(params, step_key)
        updates, new_state = optimizer.update(g, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        new_value, new_g = evaluate(new_params)
        bad = ~_tree_ok(new_params, max_norm) | ~jnp.isfinite(new_value)
        div = jnp.where((div < 0) & bad, k + 1, div)
        keep = div >= 0  # once diverged, stay frozen at the last good iterate

        def pick(new, old):
            return jnp.where(keep, old, new)

        params = jax.tree_util.tree_map(pick, new_params, params)
        opt_state = jax.tree_util.tree_map(pick, new_state, opt_state)
        value, new_g = jax.tree_util.tree_map(pick, (new_value, new_g), (value, g if grad_fn is None else None))
        return (params, opt_state, (value, new_g), div), (params, value, g if record_grads else None)

    value0, g0 = evaluate(params0)
    div0 = jnp.where(_tree_ok(params0, max_norm) & jnp.isfinite(value0), -1, 0)
    init = (params0, optimizer.init(params0), (value0, g0), div0)
    steps = jnp.arange(n_steps)
    if every == 1:
        (_, _, _, div), (path, values, grads) = jax.lax.scan(step, init, (steps, keys))
    else:  # an outer scan over blocks of `every` steps, each saving only its last iterate

        def step_keeping_grad(carry, inp):
            carry, (_, _, g) = step(carry, inp)
            return carry, g  # None unless record_grads: nothing else is stacked inside a block

        def block(carry, inp):
            carry, gs = jax.lax.scan(step_keeping_grad, carry, inp)
            first = None if gs is None else jax.tree_util.tree_map(lambda g: g[0], gs)
            return carry, (carry[0], carry[2][0], first)

        blocks = (steps.reshape(-1, every), keys.reshape(-1, every, *keys.shape[1:]))
        (_, _, _, div), (path, values, grads) = jax.lax.scan(block, init, blocks)
    params = jax.tree_util.tree_map(lambda p0, p: jnp.concatenate([p0[None], p]), params0, path)
    losses = jnp.concatenate([value0[None], values])
    return Trajectory(params, None if without_loss else losses, div, grads)


def run_chains(
    optimizer: optax.GradientTransformation,
    loss: Callable[[Params], jax.Array],
    params0: Params,
    n_steps: int,
    *,
    grad_fn: Callable[[Params, jax.Array], Params],
    key: jax.Array,
    n_chains: int,
    max_norm: float = 1e8,
) -> Trajectory:
    """``n_chains`` independent stochastic runs from the same start, ``vmap``-ed over split keys.

    Every chain gets its own key from ``jax.random.split(key, n_chains)``: no two chains share noise.

    Returns:
      A :class:`Trajectory` whose fields have a leading chain axis.
    """
    n_chains = check_positive_int("n_chains", n_chains)
    keys = jax.random.split(key, n_chains)
    return jax.vmap(
        lambda k: run(optimizer, loss, params0, n_steps, grad_fn=grad_fn, key=k, max_norm=max_norm)
    )(keys)
