"""dyncore.prng: the unrolled Threefry hash gives jax.random's own numbers, bit for bit.

The chains of chapters 3 and 6 draw their noise through these functions; if they drifted from
jax.random by one bit, every number printed from a chain would change. Each test compares with
JAX's own function on the same keys (raw ``PRNGKey`` and typed ``key``), jitted and vmapped as
the chains use them.
"""

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
import pytest

from dyncore import prng

KEY_KINDS = [jax.random.PRNGKey, jax.random.key]


def test_threefry_equals_jax_hash():
    rng = np.random.default_rng(0)
    k1, k2, x1, x2 = (jnp.asarray(rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32))
                      for _ in range(4))
    ours = jax.jit(prng.threefry2x32)(k1, k2, x1, x2)
    # JAX's hash takes one key and a flat counter array split into the two halves
    theirs = jax.vmap(lambda a, b, c, d: jax.extend.random.threefry_2x32(jnp.stack([a, b]), jnp.stack([c, d])))(
        k1, k2, x1, x2)
    np.testing.assert_array_equal(np.stack(ours, 1), theirs)


@pytest.mark.parametrize("make_key", KEY_KINDS)
def test_fold_in_equals_jax(make_key):
    keys = jax.random.split(make_key(3), 16)
    data = jnp.array([0, 1, 7, 2**31 - 1, 2**31, 2**32 - 1], dtype=jnp.uint32)
    grid = lambda f: jax.jit(jax.vmap(jax.vmap(f, (None, 0)), (0, None)))  # noqa: E731
    ours, theirs = grid(prng.fold_in)(keys, data), grid(jax.random.fold_in)(keys, data)
    assert ours.dtype == theirs.dtype  # a typed key stays typed, a raw key raw
    if jnp.issubdtype(ours.dtype, jax.dtypes.prng_key):
        ours, theirs = jax.random.key_data(ours), jax.random.key_data(theirs)
    np.testing.assert_array_equal(ours, theirs)
    # with an int32 step counter, as in a scan over arange(n_steps)
    np.testing.assert_array_equal(jax.random.key_data(prng.fold_in(make_key(1), jnp.int32(5))),
                                  jax.random.key_data(jax.random.fold_in(make_key(1), jnp.int32(5))))


@pytest.mark.parametrize("make_key", KEY_KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 40])  # both sides of prng._FEW
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_normal_equals_jax(make_key, n, dtype):
    keys = jax.random.split(make_key(5), 400)
    ours = jax.jit(jax.vmap(lambda k: prng.normal(k, n, dtype)))(keys)
    theirs = jax.vmap(lambda k: jax.random.normal(k, (n,), jnp.float32).astype(dtype))(keys)
    assert ours.dtype == theirs.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(ours, theirs)
    # and they are normals: over 400 x n draws, mean ~ 0 and variance ~ 1 (5 standard errors)
    m = ours.size
    assert abs(float(jnp.mean(ours))) < 5 / np.sqrt(m)
    assert abs(float(jnp.var(ours)) - 1) < 5 * np.sqrt(2 / m)


@pytest.mark.parametrize("make_key", KEY_KINDS)
@pytest.mark.parametrize("n, k", [(128, 32), (10, 10), (1, 1), (1000, 3)])
def test_sample_without_replacement_equals_jax_choice(make_key, n, k):
    keys = jax.random.split(make_key(9), 300)
    ours = jax.jit(jax.vmap(lambda key: prng.sample_without_replacement(key, n, k)))(keys)
    theirs = jax.vmap(lambda key: jax.random.choice(key, n, (k,), replace=False))(keys)
    np.testing.assert_array_equal(ours, theirs)
    assert all(len(set(row)) == k for row in np.asarray(ours).tolist())  # no index twice


@pytest.mark.parametrize("x64", [True, False])
def test_sample_without_replacement_with_and_without_x64(x64, enable_x64):
    sample = lambda key: prng.sample_without_replacement(key, 128, 32)  # noqa: E731
    with enable_x64(x64):
        keys = jax.random.split(jax.random.PRNGKey(4), 300)
        ours = jax.jit(jax.vmap(sample))(keys)
        theirs = jax.vmap(lambda key: jax.random.choice(key, 128, (32,), replace=False))(keys)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.perf
@pytest.mark.parametrize("x64", [True, False])
def test_sample_without_replacement_sorts_once(x64, count_primitives, enable_x64):
    # with 64-bit types: one sort of packed (key << 32 | index) words; without: top_k on the keys
    sample = lambda key: prng.sample_without_replacement(key, 128, 32)  # noqa: E731
    with enable_x64(x64):
        jaxpr = jax.make_jaxpr(sample)(jax.random.PRNGKey(4)).jaxpr
    sorts, top_ks = count_primitives(jaxpr, "sort"), count_primitives(jaxpr, "top_k")
    assert (sorts, top_ks) == ((1, 0) if x64 else (0, 1))


def test_other_generators_and_large_populations_take_jax_path():
    # a second sorting round (n above ~1600), and a non-Threefry generator: JAX's own numbers
    key = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(prng.sample_without_replacement(key, 5000, 7),
                                  jax.random.choice(key, 5000, (7,), replace=False))
    rbg = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(prng.normal(rbg, 3, jnp.float32), jax.random.normal(rbg, (3,), jnp.float32))
    np.testing.assert_array_equal(jax.random.key_data(prng.fold_in(rbg, 4)),
                                  jax.random.key_data(jax.random.fold_in(rbg, 4)))
