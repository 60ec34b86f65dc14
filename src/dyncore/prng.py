"""Per-step Gaussian noise for long chains: jax.random's own numbers, without its rolled hash loop.

On CPU, JAX lowers the Threefry-2x32 hash as a loop of five iterations (to keep compile
times short). Inside a ``lax.scan`` over thousands of steps each loop iteration is a separate
kernel launch, and in the stochastic chains of :mod:`dyncore.mixing` the two hashes a step needs
(``fold_in`` the step number, then draw the bits) cost more than everything else in the step.
:func:`fold_in` and :func:`normal` compute the same hash unrolled, written in ``jax.numpy`` so that XLA fuses
it with the rest of the step, and returns the very numbers ``jax.random.normal`` would: the
random streams, and every number printed from them, are unchanged (tested bit for bit). With
dyncore's XLA setting (``dyncore.xla_setup``) the chain loops are compiled whole, rolled hash included,
and the unrolled hash still more than halves the compute of chapter 6's 10-D chains (measured).
The hash is a jitted function: a step of a 10-D chain hashes eleven times, and JAX traces the
hash once for all of them instead of eleven times over (XLA inlines it, so the compiled code is
the same); this cut the trace of chapter 6's heaviest figure from 1.3 to 0.4 s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
# Up to this many normals per key, each is hashed on its own: in a vmapped chain XLA then lays
# the numbers out with the chains along the fast axis. Measured for 40 chains of SGD: 1.5x
# faster for 2 normals, 2.1x for 10, 1.2x for 30 (at a longer compile); the vector form wins at 100.
_FEW = 16


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


@jax.jit  # traced once per argument shapes, then reused: inlined, the hashes were most of a chain's trace
def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds) of the counters ``(x1, x2)`` under the key ``(k1, k2)``.

    All four are ``uint32`` arrays that broadcast together. The result equals JAX's
    ``threefry2x32_p`` (the hash behind ``jax.random``'s default generator) bit for bit.
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x = [x1 + ks[0], x2 + ks[1]]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x[0] = x[0] + x[1]
            x[1] = x[0] ^ _rotl(x[1], r)
        x = [x[0] + ks[(i + 1) % 3], x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)]
    return x[0], x[1]


def _raw_threefry_key(key: jax.Array) -> jax.Array | None:
    """The two words of a Threefry key (typed or raw), or None for any other generator."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != () or "threefry" not in str(jax.random.key_impl(key)):
            return None
        return jax.random.key_data(key)
    if key.shape != (2,) or key.dtype != jnp.uint32 or jax.config.jax_default_prng_impl != "threefry2x32":
        return None
    return key


def _fast(key: jax.Array) -> bool:
    # partitionable Threefry is JAX's default since 0.5; a JAX that has dropped the flag has only it
    return _raw_threefry_key(key) is not None and bool(getattr(jax.config, "jax_threefry_partitionable", True))


def fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    """``jax.random.fold_in(key, data)``, bit for bit, with the hash unrolled.

    Args:
      key: a PRNG key (typed, or a raw ``uint32[2]``); the result is of the same kind.
      data: a non-negative integer scalar below :math:`2^{32}` (may be traced), e.g. a step number.
    """
    if not _fast(key):
        return jax.random.fold_in(key, data)
    words = _raw_threefry_key(key)
    # the new key is the hash of the 64-bit counter (0, data)
    s1, s2 = threefry2x32(words[0], words[1], jnp.uint32(0), jnp.asarray(data).astype(jnp.uint32))
    out = jnp.stack([s1, s2])
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(out, impl=jax.random.key_impl(key))
    return out


def normal(key: jax.Array, n: int, dtype) -> jax.Array:
    """``jax.random.normal(key, (n,), float32).astype(dtype)``, bit for bit, with the hash unrolled.

    The normals are drawn in float32, as everywhere in :mod:`dyncore.mixing` (the noise needs no
    more precision).

    Args:
      key: a PRNG key (typed, or a raw ``uint32[2]``).
      n: how many normals (static).
      dtype: the dtype of the result.
    """
    if not _fast(key):
        return jax.random.normal(key, (n,), jnp.float32).astype(dtype)
    words = _raw_threefry_key(key)
    # random_bits(32, (n,)): hash the 64-bit counters 0..n-1 (high word 0), xor the two halves
    if n <= _FEW:  # one hash per counter, on the key's own shape: XLA fuses these far better
        bits = jnp.stack([jnp.bitwise_xor(*threefry2x32(words[0], words[1], jnp.uint32(0), jnp.uint32(j)))
                          for j in range(n)])
    else:
        bits = _bits(words, n)
    # uniform on [nextafter(-1, 0), 1) from the 23 high bits as a mantissa, as jax.random.uniform
    unit = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(lo, (unit - np.float32(1.0)) * (np.float32(1.0) - lo) + lo)
    return (np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)).astype(dtype)


def _bits(words: jax.Array, n: int) -> jax.Array:
    """``jax.random.bits(key, (n,), uint32)`` for the key with these two words."""
    b1, b2 = threefry2x32(words[0], words[1], jnp.zeros(n, jnp.uint32), jnp.arange(n, dtype=jnp.uint32))
    return b1 ^ b2


def sample_without_replacement(key: jax.Array, n: int, k: int) -> jax.Array:
    """``jax.random.choice(key, n, (k,), replace=False)``: the same ``k`` indices, in the same order.

    JAX shuffles ``arange(n)`` by a stable sort on fresh 32-bit random keys and keeps the first
    ``k``; one round of sorting suffices up to ``n`` of about 1600. The same keys are drawn here
    with the hash unrolled. With 64-bit types enabled, each key and its index are packed into one
    ``uint64`` (key in the high word), so that a plain sort of one array orders by key and then by
    index, as the stable sort does: XLA's CPU sort is about four times faster on one array of a
    primitive type than on a (key, index) pair with a comparator (3 against 12 µs for ``n = 128``).
    Without 64-bit types the ``k`` smallest come from ``lax.top_k`` on the keys' bitwise complement
    (which also puts the lower index first among equal keys). Larger ``n``, other generators or
    settings take JAX's own path.

    Args:
      key: a PRNG key (typed, or a raw ``uint32[2]``).
      n: population size (static).
      k: sample size (static), ``k <= n``.

    Returns:
      ``int32[k]`` indices into ``range(n)``.
    """
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))  # as jax.random
    if rounds != 1 or not _fast(key):
        return jax.random.choice(key, n, (k,), replace=False).astype(jnp.int32)
    words = _raw_threefry_key(key)
    # split(key)[1]: the hash of the 64-bit counter 1
    sub = threefry2x32(words[0], words[1], jnp.uint32(0), jnp.uint32(1))
    bits = _bits(sub, n)
    if jax.config.jax_enable_x64:  # one array of (key << 32 | index): sorted = stable order by key
        packed = (bits.astype(jnp.uint64) << np.uint64(32)) | jnp.arange(n, dtype=jnp.uint64)
        return (jnp.sort(packed)[:k] & np.uint64(0xFFFFFFFF)).astype(jnp.int32)
    return jax.lax.top_k(~bits, k)[1]
