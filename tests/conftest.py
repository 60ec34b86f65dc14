"""Shared set-up for the dyncore tests.

float64 must be enabled before any JAX array exists, so it is the very first thing done here.
On a GPU, JAX would by default reserve 75% of the device's memory for this process, leaving the
notebook kernels that nbval starts with the rest; the tests allocate on demand instead.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.extend.core  # noqa: E402

try:  # jax >= 0.10; the lowest declared jax (tests/test_lower_bounds.py) has it in jax.core
    _jaxprs_in_params = jax.extend.core.jaxprs_in_params
except AttributeError:  # pragma: no cover - old jax
    _jaxprs_in_params = jax.core.jaxprs_in_params

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def spd_with_spectrum(rng: np.random.Generator, eigenvalues) -> np.ndarray:
    """A symmetric matrix ``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q``."""
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    q = random_orthogonal(rng, eigenvalues.size)
    a = (q * eigenvalues[None, :]) @ q.T
    return 0.5 * (a + a.T)


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed (a fresh one for every test)."""
    return np.random.default_rng(20240611)


def count_primitive(jaxpr, name: str) -> int:
    """Occurrences of primitive ``name`` in a jaxpr, sub-jaxprs (scan bodies, pjit calls) included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for sub in _jaxprs_in_params(eqn.params):
            n += count_primitive(sub, name)
    return n


@pytest.fixture
def enable_x64():
    """``enable_x64(flag)``: a context manager switching float64 on or off inside a test.

    ``jax.enable_x64`` from jax 0.8; the lowest declared jax (tests/test_lower_bounds.py) has only
    the experimental spelling.
    """
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64
    from jax.experimental import enable_x64 as old  # pragma: no cover - old jax

    return old


@pytest.fixture
def count_primitives():
    """``count_primitives(jaxpr, name)`` -> how often primitive ``name`` occurs, sub-jaxprs included."""
    return count_primitive


@pytest.fixture
def make_spd():
    """``make_spd(rng, eigenvalues)`` -> symmetric matrix with exactly that spectrum."""
    return spd_with_spectrum


@pytest.fixture
def make_orthogonal():
    """``make_orthogonal(rng, d)`` -> a random ``d x d`` orthogonal matrix."""
    return random_orthogonal


# Problems built once per session: their constructors run eager JAX ops (random draws), whose
# first call per shape compiles, so sharing instances (and shapes) keeps the suite fast.
@pytest.fixture(scope="session")
def nl_problem():
    import dyncore as dc

    return dc.normalized_linear(jax.random.PRNGKey(3), n=24, d=3)


@pytest.fixture(scope="session")
def mlp_plain():
    import dyncore as dc

    return dc.mlp(jax.random.PRNGKey(2), sizes=(3, 4, 2), n=16, normalize=False)


@pytest.fixture(scope="session")
def mlp_norm():
    import dyncore as dc

    return dc.mlp(jax.random.PRNGKey(2), sizes=(3, 4, 2), n=16, normalize=True)
