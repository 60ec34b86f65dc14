"""dyncore: continuous-time models of neural-network training, in JAX.

The library behind the dyncore book, organised by concept. Each module imports only from the
layers above it:

1. foundations: :mod:`~dyncore.validation` (hyper-parameter ranges), :mod:`~dyncore.trees` (pytree
   sums and norms), :mod:`~dyncore.checks` (measured-versus-predicted checks);
2. machinery, the flat core of this namespace:

   * :mod:`~dyncore.problems`: losses with a start point, synthetic and real (the handwritten digits);
   * :mod:`~dyncore.curvature`: Hessian-vector products, eigenpairs, sharpness along a run;
   * :mod:`~dyncore.optimizers`: every optimizer, as an optax transformation;
   * :mod:`~dyncore.runner`: one runner for all of them (:func:`~dyncore.runner.run`, :func:`~dyncore.runner.run_chains`);
   * :mod:`~dyncore.flows`: the vector fields of backward error analysis;
   * :mod:`~dyncore.integration`: every integrator, with one RK4 stepper and one divergence guard;
   * :mod:`~dyncore.figures`: slider figures that also work on a static page;

3. the theory of each chapter, as a namespace read as the book reads it:
   :mod:`dc.eom <dyncore.eom>` (equation of motion), :mod:`dc.scale_invariance
   <dyncore.scale_invariance>` (norms, equilibria, clocks), :mod:`dc.noether <dyncore.noether>`,
   :mod:`dc.principal <dyncore.principal>`, :mod:`dc.adaptive <dyncore.adaptive>` and
   :mod:`dc.mixing <dyncore.mixing>`.

Hyper-parameters are keyword-only, with one name each (``eta, beta, rho, eps, lam``); only an
optimizer's learning rate comes first, as in optax. The start point is always ``theta0``.

Everything runs on the CPU by default and unchanged on a GPU. Numerical checks need float64:
call ``jax.config.update("jax_enable_x64", True)`` before creating arrays. Importing dyncore
before the first JAX computation lets XLA compile small CPU loops whole (``dyncore.xla_setup``).

>>> import jax.numpy as jnp
>>> import dyncore as dc
>>> problem = dc.quadratic(jnp.diag(jnp.array([1.0, 3.0])))
>>> traj = dc.run(dc.heavy_ball(0.1, beta=0.5), problem.loss, problem.theta0, 50)
>>> traj.status(), round(float(traj.loss[-1]), 8)
('stayed bounded', 0.0)
"""

from . import xla_setup  # first: sets XLA's CPU loop option (below, a module may start JAX's backend)
from . import adaptive, eom, mixing, noether, principal, scale_invariance
from .checks import CheckResult, check, check_bound, check_slope, fit_slope, rel_error
from .curvature import (
    Eigenpairs,
    SharpnessTrace,
    hessian,
    hessian_eigh,
    hvp,
    hvp_fd,
    sharpness,
    top_eigenpairs,
    track_sharpness,
)
from .figures import Slider, SliderFigure, mark_divergence, slider_figure, valid_prefix
from .flows import counter_terms, gradient_field, modified_field, modified_loss
from .integration import FlowSolution, integrate, integrate_complex, integrate_flows, integrate_pieces
from .optimizers import adam, adamw, dal, gd, heavy_ball, rmsprop, with_momentum
from .problems import (
    Problem,
    angle_toy,
    bilinear,
    digits,
    great_circle,
    minibatch_grad,
    mlp,
    normalized_linear,
    quadratic,
)
from .runner import DivergenceError, Observer, Trajectory, run, run_chains
from .validation import check_hparams

__version__ = "0.3.0"

__all__ = [
    # theory namespaces
    "eom", "scale_invariance", "noether", "principal", "adaptive", "mixing",
    # checks
    "check", "check_bound", "check_slope", "fit_slope", "rel_error", "CheckResult",
    # problems
    "Problem", "quadratic", "bilinear", "angle_toy", "great_circle", "normalized_linear", "mlp",
    "digits", "minibatch_grad",
    # optimizers and the runner
    "gd", "heavy_ball", "rmsprop", "adam", "adamw", "dal", "with_momentum",
    "run", "run_chains", "Trajectory", "DivergenceError", "Observer",
    # flows and integration
    "gradient_field", "modified_field", "counter_terms", "modified_loss",
    "integrate", "integrate_complex", "integrate_flows", "integrate_pieces", "FlowSolution",
    # curvature
    "hvp", "hvp_fd", "hessian", "hessian_eigh", "top_eigenpairs", "sharpness", "track_sharpness",
    "Eigenpairs", "SharpnessTrace",
    # figures
    "Slider", "SliderFigure", "slider_figure", "valid_prefix", "mark_divergence",
    "check_hparams",
]
