"""Hyper-parameter validation: one name, one range, one error message, everywhere."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dyncore as dc
from dyncore.validation import check_positive, check_positive_int

# The valid range of every book hyper-parameter, as the message must spell it.
RANGE_TEXT = {
    "eta": "> 0",
    "h": "> 0",
    "lam": ">= 0",
    "beta": "in [0, 1)",
    "rho": "in [0, 1)",
    "eps": "> 0",
}

BAD_VALUES = {
    "eta": [0.0, -0.1, -1e-300, math.nan, math.inf, -math.inf],
    "h": [0.0, -2.0, math.nan, math.inf],
    "lam": [-0.1, -1e-12, math.nan, math.inf],
    "beta": [-0.1, 1.0, 1.5, math.nan, math.inf],
    "rho": [-1e-3, 1.0, 2.0, math.nan, -math.inf],
    "eps": [0.0, -1e-8, math.nan, math.inf],
}

GOOD_VALUES = {
    "eta": [1e-12, 0.1, 1e6],
    "h": [1e-9, 3.0],
    "lam": [0.0, 0.5, 1e3],
    "beta": [0.0, 0.5, 0.999999],
    "rho": [0.0, 0.9, 0.999],
    "eps": [1e-300, 1e-8, 1.0],
}


def test_float64_enabled_by_conftest():
    assert jnp.zeros(1).dtype == jnp.float64


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in BAD_VALUES.items() for v in vs])
def test_bad_value_rejected_with_named_message(name, value):
    with pytest.raises(ValueError) as info:
        dc.check_hparams(**{name: value})
    expected = f"{name} must be {RANGE_TEXT[name]}, got {value:g}"
    assert str(info.value) == expected


def test_message_format_example_from_docs():
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got -0.1")):
        dc.check_hparams(eta=-0.1)
    with pytest.raises(ValueError, match=re.escape("beta must be in [0, 1), got 1")):
        dc.check_hparams(beta=1.0)


# The nearest floats on either side of each end of a range: inside must pass, outside must raise.
TINY = 5e-324  # the smallest positive (subnormal) float64
BELOW_ONE = float(np.nextafter(1.0, 0.0))
JUST_INSIDE = {
    "eta": [TINY], "h": [TINY], "eps": [TINY],
    "lam": [0.0],
    "beta": [0.0, BELOW_ONE], "rho": [0.0, BELOW_ONE],
}
JUST_OUTSIDE = {
    "eta": [0.0, -TINY], "h": [0.0, -TINY], "eps": [0.0, -TINY],
    "lam": [-TINY],
    "beta": [-TINY, 1.0], "rho": [-TINY, 1.0],
}


@pytest.mark.parametrize("name", sorted(RANGE_TEXT))
def test_range_boundaries_pass_inside_and_raise_just_outside(name):
    """Each valid value passes, alone and as one array, and the nearest float beyond each end raises."""
    inside = GOOD_VALUES[name] + JUST_INSIDE[name]
    for value in inside:
        dc.check_hparams(**{name: value})  # must not raise
    dc.check_hparams(**{name: np.array(inside)})
    for value in JUST_OUTSIDE[name]:
        with pytest.raises(ValueError) as info:
            dc.check_hparams(**{name: value})
        assert str(info.value) == f"{name} must be {RANGE_TEXT[name]}, got {value:g}"
        # one bad element makes the whole array invalid, and it is the one named
        with pytest.raises(ValueError, match=re.escape(f"{name} must be {RANGE_TEXT[name]}, got {value:g}")):
            dc.check_hparams(**{name: np.array(inside + [value])})


def test_integer_boundary_values_accepted_and_rejected():
    dc.check_hparams(lam=0, beta=0, rho=0, eta=1)  # integers are numbers too
    with pytest.raises(ValueError, match=re.escape("beta must be in [0, 1), got 1")):
        dc.check_hparams(lam=0, beta=1)
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got 0")):
        dc.check_hparams(eta=0)


def test_none_is_skipped_and_several_names_checked_together():
    dc.check_hparams(eta=None, lam=None)  # must not raise
    # None skips only its own name: the others are still checked
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got -1")):
        dc.check_hparams(eta=-1.0, lam=None)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        dc.check_hparams(eta=0.1, lam=-1.0, beta=0.5)


def test_arrays_checked_elementwise_and_offending_element_named():
    dc.check_hparams(eta=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got -0.2")):
        dc.check_hparams(eta=np.array([0.1, -0.2, 0.3]))
    with pytest.raises(ValueError, match="beta must be in"):
        dc.check_hparams(beta=jnp.array([[0.0, 0.5], [0.9, 1.0]]))


def test_unknown_name_is_a_key_error():
    with pytest.raises(KeyError):
        dc.check_hparams(learning_rate=0.1)


def test_traced_invalid_values_are_not_checked_but_concrete_ones_are():
    """validation.py's contract: a traced value cannot be inspected, so it passes unchecked
    (no error at trace time, the computation runs with it); the same call made eagerly, with a
    concrete value, raises. Boundaries that take concrete numbers (a slider, a constructor called
    outside jit) are where invalid values are caught."""

    def first_update(eta):  # a GD step of dc.gd(eta) from theta = 1 with gradient 2
        tx = dc.gd(eta)
        updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.ones(1)), jnp.ones(1))
        return updates

    # traced: tracing succeeds, and the update is computed with the invalid eta (an ascent step)
    jaxpr = jax.make_jaxpr(first_update)(-1.0)
    assert jaxpr.jaxpr.invars  # eta is an input of the traced computation, not a checked constant
    np.testing.assert_allclose(np.asarray(jax.jit(first_update)(-1.0)), [2.0], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(jax.vmap(first_update)(jnp.array([-1.0, 0.5]))), [[2.0], [-1.0]],
                               rtol=1e-15)
    # concrete: the same call raises, naming the parameter and its range
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got -1")):
        first_update(-1.0)
    # and check_hparams itself, on a tracer and on the same number
    jax.jit(lambda beta: dc.check_hparams(beta=beta) or beta)(2.0)
    with pytest.raises(ValueError, match=re.escape("beta must be in [0, 1), got 2")):
        dc.check_hparams(beta=2.0)


def test_constructors_accept_traced_hparams_inside_jit():
    @jax.jit
    def one_step(eta, lam, beta):
        tx = dc.heavy_ball(eta, beta=beta, lam=lam)
        params = jnp.array([1.0, -2.0])
        grads = jnp.array([0.5, 0.5])
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    upd = one_step(0.1, 0.2, 0.9)
    # first heavy-ball step from rest: -eta (g + lam theta)
    np.testing.assert_allclose(np.asarray(upd), -0.1 * (np.array([0.5, 0.5]) + 0.2 * np.array([1.0, -2.0])), rtol=1e-14)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3", None, np.float64(2.0)])
def test_check_positive_int_rejects(value):
    with pytest.raises(ValueError, match="must be a positive integer"):
        check_positive_int("n_steps", value)


def test_check_positive_int_accepts_numpy_ints():
    out = check_positive_int("n", np.int64(3))
    assert out == 3 and type(out) is int


# ------------------------------------------------------------------ public constructors
def _loss(theta):
    return 0.5 * jnp.sum(theta**2)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: dc.gd(-0.1), "eta must be > 0"),
        (lambda: dc.gd(0.0), "eta must be > 0"),
        (lambda: dc.gd(0.1, lam=-0.01), "lam must be >= 0"),
        (lambda: dc.gd(math.nan), "eta must be > 0, got nan"),
        (lambda: dc.heavy_ball(0.1, beta=1.0), "beta must be in"),
        (lambda: dc.heavy_ball(0.1, beta=-0.5), "beta must be in"),
        (lambda: dc.heavy_ball(0.1, beta=0.9, lam=math.inf), "lam must be >= 0"),
        (lambda: dc.rmsprop(0.1, rho=1.0), "rho must be in"),
        (lambda: dc.rmsprop(0.1, rho=0.9, eps=0.0), "eps must be > 0"),
        (lambda: dc.rmsprop(-1.0, rho=0.9), "eta must be > 0"),
        (lambda: dc.adam(0.1, beta=0.9, rho=1.0), "rho must be in"),
        (lambda: dc.adam(0.1, beta=1.0, rho=0.99), "beta must be in"),
        (lambda: dc.adam(0.1, beta=0.9, rho=0.99, eps=-1e-8), "eps must be > 0"),
        (lambda: dc.adam(0.1, beta=0.9, rho=0.99, lam=-1.0), "lam must be >= 0"),
        (lambda: dc.modified_field(_loss, eta=0.0, order=1), "eta must be > 0"),
        (lambda: dc.modified_field(_loss, eta=0.1, order=1, lam=-1.0), "lam must be >= 0"),
        (lambda: dc.modified_field(_loss, eta=0.1, order=-1), "order must be a non-negative integer"),
        (lambda: dc.modified_field(_loss, eta=0.1, order=1.5), "order must be a non-negative integer"),
        (lambda: dc.modified_loss(_loss, eta=-0.1), "eta must be > 0"),
        (lambda: dc.counter_terms(_loss, 0), "order must be a positive integer"),
        (lambda: dc.gradient_field(_loss, lam=-0.1), "lam must be >= 0"),
        (lambda: dc.integrate(lambda y: -y, jnp.ones(2), [0.0, 1.0], dt=0.0), "dt must be > 0, got 0"),
        (lambda: dc.integrate(lambda y: -y, jnp.ones(2), [0.0, 1.0], dt=-0.1), "dt must be > 0, got -0.1"),
        (lambda: dc.integrate(lambda y: -y, jnp.ones(2), [0.0, 1.0, 0.5]), "strictly increasing"),
        (lambda: dc.integrate(lambda y: -y, jnp.ones(2), [0.0]), "at least two times"),
        (lambda: dc.eom.log_flow_quadratic(np.eye(2), np.ones(2), [0.0], eta=-1.0), "eta must be > 0"),
        (lambda: dc.eom.log_flow_quadratic(np.eye(2), np.ones(2), [0.0], eta=0.1, lam=-1.0), "lam must be >= 0"),
        (lambda: dc.Slider("eta", [-0.1, 0.1]), "eta must be > 0"),
        (lambda: dc.Slider("x", [0.1]), "at least two grid values"),
        (lambda: dc.slider_figure(lambda eta: eta, lambda f, r, **k: None, []), "1 to 4 sliders"),
        (
            lambda: dc.slider_figure(
                lambda eta: eta, lambda f, r, **k: None, [dc.Slider("eta", [0.1, 0.2])] * 2
            ),
            "distinct",
        ),
        (
            lambda: dc.slider_figure(
                lambda **k: 0.0,
                lambda f, r, **k: None,
                [dc.Slider(n, [0, 1]) for n in "abcde"],
            ),
            "1 to 4 sliders, got 5",
        ),
        (
            lambda: dc.slider_figure(
                lambda **k: 0.0,
                lambda f, r, **k: None,
                [dc.Slider(n, np.arange(6.0)) for n in "abc"],
            ),
            "216 static frames; at most 150",
        ),
        (lambda: dc.run(dc.gd(0.1), _loss, jnp.ones(2), 0), "n_steps must be a positive integer, got 0"),
        (lambda: dc.run(dc.gd(0.1), _loss, jnp.ones(2), 5, max_norm=0.0), "max_norm must be > 0"),
        (
            lambda: dc.run(dc.gd(0.1), _loss, jnp.ones(2), 5, grad_fn=lambda p, k: p),
            "key is required",
        ),
        (lambda: dc.top_eigenpairs(_loss, jnp.ones(3), k=4), "k must be <="),
        (lambda: dc.top_eigenpairs(_loss, jnp.ones(10), k=6, num_iters=5), "k must be <="),
        (lambda: dc.top_eigenpairs(_loss, jnp.ones(3), k=0), "k must be a positive integer"),
        (lambda: dc.top_eigenpairs(_loss, jnp.ones(3), k=1, tol=0.0), "tol must be in (0, 1)"),
        (lambda: dc.top_eigenpairs(_loss, jnp.ones(3), k=1, tol=1.0), "tol must be in (0, 1)"),
        (lambda: dc.quadratic(np.ones((2, 3))), "square"),
        (lambda: dc.quadratic(np.eye(2), theta0=np.ones(3)), "shape"),
        (lambda: dc.bilinear(theta0=(1.0, 2.0, 3.0)), "shape"),
        (lambda: dc.great_circle(dim=2), "dim must be >= 3"),
        (lambda: dc.mlp(jax.random.PRNGKey(0), sizes=(3,)), "at least an input and an output"),
    ],
)
def test_public_functions_raise_value_error_on_bad_input(make, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        make()


@pytest.mark.parametrize(
    "value,kwargs,match",
    [
        (0.0, {}, "c2 must be > 0, got 0"),
        (-1.0, {"allow_zero": True}, "c2 must be >= 0, got -1"),
        (np.array([1.0, np.nan]), {}, "c2 must be > 0, got nan"),
        (np.inf, {}, "c2 must be > 0, got inf"),
        (0.0, {"why": "for an equilibrium to exist"}, "c2 must be > 0 for an equilibrium to exist, got 0"),
    ],
)
def test_check_positive_names_the_constant_and_its_range(value, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        check_positive("c2", value, **kwargs)


def test_check_positive_boundaries_and_traced_values():
    check_positive("c2", 0.5)
    check_positive("c2", np.array([1.0, 2.0]))
    check_positive("c2", TINY)
    check_positive("T", 0.0, allow_zero=True)  # zero is inside with allow_zero ...
    with pytest.raises(ValueError, match=re.escape("T must be >= 0, got -4.94066e-324")):
        check_positive("T", -TINY, allow_zero=True)  # ... the nearest negative float is not
    with pytest.raises(ValueError, match=re.escape("c2 must be > 0, got 0")):
        check_positive("c2", 0.0)
    # traced: unchecked (the jitted function runs); concrete: the same value raises
    assert float(jax.jit(lambda c: check_positive("c2", c) or c)(-1.0)) == -1.0
    with pytest.raises(ValueError, match=re.escape("c2 must be > 0, got -1")):
        check_positive("c2", -1.0)
