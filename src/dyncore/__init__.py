"""dyncore: continuous-time models of neural-network training, in JAX.

The library behind the dyncore book. Layers, each importing only from those above it:

1. foundations: :mod:`dyncore.validation`, :mod:`dyncore.curvature`, :mod:`dyncore.checks`;
2. building blocks: :mod:`dyncore.problems`, :mod:`dyncore.optimizers`, :mod:`dyncore.flows`,
   :mod:`dyncore.figures`;
3. this public API, used by the notebooks, the tests and the benchmarks.

Everything runs on the CPU by default and unchanged on a GPU. Numerical checks need float64:
call ``jax.config.update("jax_enable_x64", True)`` before creating arrays. Importing dyncore
before the first JAX computation lets XLA compile small CPU loops whole (``dyncore._xla``).
"""

from . import _xla  # first: sets XLA's CPU loop option (below, a module may start JAX's backend)
from .adaptive import (
    Tracking,
    adam_field,
    adam_field_eps_outside,
    adamw,
    adamw_field,
    drift_constant,
    drift_factor,
    ema_lag,
    integrate_pieces,
    last_iterate,
    minibatch_field,
    one_norm_grad,
    one_norm_weight,
    penalises,
    perturbed_one_norm,
    plain_field,
    rmsprop_field,
    sign_threshold,
    step_residual,
    tracking_errors,
)
from .checks import CheckResult, check, check_bound, check_slope, fit_slope, rel_error
from .curvature import Eigenpairs, hessian, hessian_eigh, hvp, sharpness, top_eigenpairs
from .figures import Slider, SliderFigure, mark_divergence, slider_figure, valid_prefix
from .flows import (
    FlowSolution,
    counter_terms,
    gradient_field,
    integrate,
    log_flow_quadratic,
    modified_field,
    modified_loss,
)
from .noether import (
    DiscreteCharges,
    NLDTerms,
    RMSPropNorm,
    SphereRun,
    Symmetry,
    TranslationRates,
    bregman_field,
    bregman_kinetic,
    bregman_momentum,
    charge_rate,
    coherence,
    damped_particle_field,
    discrete_charges,
    discrete_nld,
    equilibrium_angle,
    equilibrium_norm4,
    euclidean_kinetic,
    gd_charge_step,
    ksb_term,
    mass_damping,
    matched_velocity,
    momentum_flow_field,
    nld_terms,
    noether_charge,
    norm_law,
    rescale_symmetry,
    rescaled_hparams,
    rmsprop_mapping,
    rotation_symmetry,
    scale_symmetry,
    sphere_rmsprop,
    symmetry_residual,
    translation_rates,
    translation_symmetry,
    with_momentum,
)
from .optimizers import DivergenceError, Trajectory, adam, gd, heavy_ball, rmsprop, run, run_chains
from .principal import (
    SharpnessTrace,
    ScaleByDalState,
    alpha_field,
    alpha_igr,
    alpha_pf,
    dal,
    dal_rate,
    heavy_ball_log_flow,
    heavy_ball_spectral_radius,
    hvp_fd,
    integrate_complex,
    integrate_flows,
    pf_rate,
    principal_field,
    principal_field_topk,
    principal_flow_quadratic,
    scale_by_dal,
    third_order_term,
    track_sharpness,
)
from .mixing import (
    ChainRecord,
    Estimate,
    angle_variance,
    anisotropic_noise_grad,
    chain_mean,
    circular_order,
    clock,
    clock_inverse,
    diffusion_rate,
    first_passage,
    great_circle_grad,
    modulated_circle,
    noisy_grad,
    quadratic_variation,
    rotated_grad,
    sde_norm4,
    sgd_chains,
    stationary_cos2,
)
from .problems import (
    Problem,
    angle_toy,
    bilinear,
    great_circle,
    minibatch_grad,
    mlp,
    normalized_linear,
    quadratic,
)
from .symmetry import NormEquilibrium, angular_update, mean_component, mean_decay_rate, norm_equilibrium, norm_flow
from .validation import check_hparams

__version__ = "0.1.0"

__all__ = [
    "CheckResult", "check", "check_bound", "check_slope", "fit_slope", "rel_error",
    "Eigenpairs", "hessian", "hessian_eigh", "hvp", "sharpness", "top_eigenpairs",
    "Slider", "SliderFigure", "mark_divergence", "slider_figure", "valid_prefix",
    "FlowSolution", "counter_terms", "gradient_field", "integrate", "log_flow_quadratic",
    "modified_field", "modified_loss",
    "DivergenceError", "Trajectory", "adam", "gd", "heavy_ball", "rmsprop", "run", "run_chains",
    "Problem", "angle_toy", "bilinear", "great_circle", "minibatch_grad", "mlp",
    "normalized_linear", "quadratic",
    "NormEquilibrium", "angular_update", "mean_component", "mean_decay_rate", "norm_equilibrium", "norm_flow",
    "Symmetry", "translation_symmetry", "scale_symmetry", "rescale_symmetry", "rotation_symmetry",
    "symmetry_residual", "euclidean_kinetic", "bregman_kinetic", "ksb_term", "bregman_momentum",
    "noether_charge", "NLDTerms", "nld_terms", "bregman_field", "mass_damping",
    "damped_particle_field", "momentum_flow_field", "matched_velocity", "gd_charge_step",
    "DiscreteCharges", "discrete_charges", "discrete_nld", "charge_rate", "TranslationRates",
    "translation_rates", "equilibrium_angle", "equilibrium_norm4", "norm_law", "coherence",
    "RMSPropNorm", "rmsprop_mapping", "SphereRun", "sphere_rmsprop", "rescaled_hparams",
    "with_momentum",
    "alpha_pf", "alpha_igr", "alpha_field", "pf_rate", "principal_field", "principal_field_topk",
    "third_order_term", "integrate_complex", "integrate_flows", "principal_flow_quadratic",
    "SharpnessTrace", "track_sharpness", "hvp_fd", "dal_rate", "ScaleByDalState", "scale_by_dal",
    "dal", "heavy_ball_log_flow", "heavy_ball_spectral_radius",
    "ema_lag", "drift_factor", "drift_constant", "one_norm_weight", "penalises", "sign_threshold",
    "perturbed_one_norm", "one_norm_grad", "plain_field", "adam_field", "rmsprop_field",
    "minibatch_field", "adamw", "adamw_field", "adam_field_eps_outside", "integrate_pieces",
    "Tracking", "tracking_errors", "last_iterate", "step_residual",
    "ChainRecord", "Estimate", "angle_variance", "anisotropic_noise_grad", "chain_mean",
    "circular_order", "clock", "clock_inverse", "diffusion_rate", "first_passage",
    "great_circle_grad", "modulated_circle", "noisy_grad", "quadratic_variation", "rotated_grad",
    "sde_norm4", "sgd_chains", "stationary_cos2",
    "check_hparams",
]
