"""dyncore's XLA setting: small CPU loops compiled whole (``dyncore.xla_setup``).

The flag is read once per process, when JAX starts its backend, so the behaviour is checked in
fresh Python processes (on the CPU, whatever this process runs on); the flag string itself is
checked here.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from dyncore import xla_setup

ENTRY = f"{xla_setup.OPTION}={xla_setup.LOOP_BYTES}"

# a loop over 1000 floats touches about 16 kB an iteration: above XLA's own bound, below dyncore's
PROBE = textwrap.dedent("""
    import json, os, warnings
    import jax, jax.numpy as jnp
    if os.environ.get("PROBE_START_JAX_FIRST"):
        jnp.zeros(1).block_until_ready()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import dyncore
    f = jax.jit(lambda x: jax.lax.fori_loop(0, 100, lambda i, y: 1.01 * y + 1.0, x))
    hlo = f.lower(jnp.ones(1000)).compile().as_text()
    print(json.dumps(dict(flags=os.environ.get("XLA_FLAGS", ""), whole="xla_cpu_small_call" in hlo,
                          before=dyncore.xla_setup.FLAGS_BEFORE, warnings=[str(w.message) for w in caught])))
""")


def probe(**env) -> dict:
    import json

    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_setup.OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**base, "JAX_PLATFORMS": "cpu", **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("flags, expected", [
    ("", f"--xla_backend_extra_options={ENTRY}"),
    ("--xla_cpu_enable_fast_math=false", f"--xla_cpu_enable_fast_math=false --xla_backend_extra_options={ENTRY}"),
    # a second --xla_backend_extra_options would replace the first: the entry joins the list
    ("--xla_backend_extra_options=xla_cpu_ftz --foo=1", f"--xla_backend_extra_options=xla_cpu_ftz,{ENTRY} --foo=1"),
    ("--xla_backend_extra_options=", f"--xla_backend_extra_options={ENTRY}"),
    # the user's own bound wins
    (f"--xla_backend_extra_options={xla_setup.OPTION}=1000", f"--xla_backend_extra_options={xla_setup.OPTION}=1000"),
])
def test_the_loop_bound_is_added_to_xla_flags_once(flags, expected):
    assert xla_setup.with_loop_option(flags) == expected
    assert xla_setup.with_loop_option(expected) == expected


def test_importing_dyncore_first_compiles_small_loops_whole():
    on = probe()
    assert on["whole"] and ENTRY in on["flags"] and not on["warnings"]
    assert on["before"] is None  # what the process had: no XLA_FLAGS (the benchmark's XLA-default run)
    # the opt-out, and a user's own bound (XLA's default size), give XLA's usual loop
    assert not probe(**{xla_setup.OPT_OUT: "1"})["whole"]
    own = probe(XLA_FLAGS=f"--xla_backend_extra_options={xla_setup.OPTION}=1000")
    assert not own["whole"] and ENTRY not in own["flags"]
    assert own["before"] == own["flags"]


def test_importing_dyncore_after_jax_started_warns_and_changes_nothing():
    late = probe(PROBE_START_JAX_FIRST="1")
    assert not late["whole"] and ENTRY not in late["flags"]
    assert len(late["warnings"]) == 1 and "Import dyncore first" in late["warnings"][0]
