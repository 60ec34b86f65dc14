"""Small pytree utilities shared by dyncore's modules (sums, norms and a finiteness test).

All of them take arbitrary pytrees of arrays (real or complex) and are ``jit``/``vmap``-friendly.

>>> import jax.numpy as jnp
>>> from dyncore.trees import sq_norm, vdot
>>> tree = {"w": jnp.array([3.0, 4.0]), "b": jnp.array(0.0)}
>>> float(sq_norm(tree)), float(vdot(tree, tree))
(25.0, 25.0)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = ["tmap", "sq_norm", "norm", "vdot", "tsum", "flat", "tree_ok", "as_float", "as_complex"]

Params = Any

tmap = jax.tree_util.tree_map


def sq_norm(tree: Params) -> jax.Array:
    """:math:`\\sum |x|^2` over every entry of every leaf."""
    return sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree))


def norm(tree: Params) -> jax.Array:
    """Euclidean norm of a pytree, all leaves together."""
    return jnp.sqrt(sq_norm(tree))


def vdot(a: Params, b: Params) -> jax.Array:
    """Euclidean inner product :math:`\\sum a\\,b` of two pytrees with the same structure (no conjugation)."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return sum(jnp.sum(x * y) for x, y in zip(la, lb))


def tsum(tree: Params) -> jax.Array:
    """Sum of every entry of every leaf."""
    return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def flat(tree: Params) -> jax.Array:
    """The leaves of a pytree concatenated into one vector (:func:`jax.flatten_util.ravel_pytree`)."""
    return ravel_pytree(tree)[0]


def tree_ok(tree: Params, max_norm) -> jax.Array:
    """Whether every entry is finite and the norm is at most ``max_norm`` (a bool array)."""
    sq = sq_norm(tree)
    return jnp.isfinite(sq) & (sq <= max_norm**2)


def as_float(x) -> jax.Array:
    """``x`` as an array of JAX's default float type (float64 when x64 is on)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def as_complex(x) -> jax.Array:
    """``x`` as a complex array of at least ``x``'s precision (real leaves of a complex flow)."""
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.complex64))
