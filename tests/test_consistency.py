"""Where two chapters compute the same quantity with different functions, the functions agree.

Chapter 2 (Miyagawa) and chapter 3 (Tanaka & Kunin) both treat translation- and scale-invariant
layers; chapter 6 (Li, Wang & Yu) treats the norm of a scale-invariant layer under noise. Each
chapter's function models its own paper, so their domains differ; at the points where they
describe the same thing (no momentum, leading order) they must give the same numbers.
"""

import jax
import numpy as np
import pytest

import dyncore as dc

jax.config.update("jax_enable_x64", True)

GRID = [(0.1, 0.01), (0.05, 0.2), (0.3, 0.5), (1.0, 0.1)]


@pytest.mark.parametrize("eta,lam", GRID)
def test_translation_decay_of_heavy_ball_at_beta_0_is_gd_mean_decay(eta, lam):
    """Ch. 3's exact heavy-ball rate of a translation charge, at β = 0, is ch. 2's -ln(1 - ηλ)."""
    rates = dc.translation_rates(eta, 0.0, lam)
    assert float(rates.exact) == pytest.approx(float(dc.mean_decay_rate(eta, lam)), rel=1e-12)
    assert float(rates.gradient_flow) == pytest.approx(float(dc.mean_decay_rate(eta, lam, order=0)), rel=1e-14)
    # Eq. (3) is correct through (ηλ)², as is the EoM with one counter term: they agree to O((ηλ)³)
    x = eta * lam
    assert abs(float(rates.eq3) - float(dc.mean_decay_rate(eta, lam, order=1))) < 2 * x**3


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("eta,lam", GRID[:3])
def test_equilibrium_angle_of_ch3_is_the_exact_gd_angle_of_ch2(eta, lam, beta):
    """√(2ηλ/(1+β)) is the chord of ch. 2's exact heavy-ball equilibrium, cos Δ = 1 - ηλ/(1+β)."""
    chord2 = 2 * (1 - float(dc.norm_equilibrium(eta, lam, 1.0, model="gd", beta=beta).cos_delta))
    assert chord2 == pytest.approx(float(dc.equilibrium_angle(eta, lam, beta)) ** 2, rel=1e-12)


@pytest.mark.parametrize("eta,lam,c", [(0.1, 0.01, 1.0), (0.02, 0.1, 0.7), (0.4, 0.05, 2.0)])
def test_equilibrium_norms_agree_at_leading_order(eta, lam, c):
    """Ch. 3's r⁴ (β = 0), ch. 2's leading-order model and ch. 6's SDE equilibrium are one formula."""
    leading = float(dc.norm_equilibrium(eta, lam, c, model="leading").r4)
    assert float(dc.equilibrium_norm4(eta, lam, c**2)) == pytest.approx(leading, rel=1e-14)
    assert float(dc.equilibrium_norm4(eta, lam, c**2, coherent=False)) == pytest.approx(leading, rel=1e-14)
    # the SDE's ‖x‖⁴ → ηC/(2λ) as k → ∞ (C = tr Σ at unit norm plays the role of c²)
    assert float(dc.sde_norm4(10 / (eta * lam), eta, lam, c**2, r0=1.0)) == pytest.approx(leading, rel=1e-6)
    # and the exact GD equilibrium differs from it at relative order ηλ, with the sign ch. 2 derives
    exact = float(dc.norm_equilibrium(eta, lam, c, model="gd").r4)
    assert exact / leading - 1 == pytest.approx(eta * lam / 2, rel=0.1 + eta * lam)
