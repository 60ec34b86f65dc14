"""The lowest dependency versions that pyproject.toml declares are the ones the unit tests pass with.

The test reads the lower bounds (``name>=version``) from ``[project] dependencies``, makes a fresh
virtual environment, installs exactly those versions there (jaxlib pinned to jax's version;
transitive packages are left to pip, except for the constraints in ``tests/lower-bounds.txt``),
plus pytest and this checkout of dyncore (``--no-deps``, editable, so the tests import this
working tree), checks the installed versions, and runs the library's unit tests and doctests in
that environment. It takes a few minutes (less with a warm pip cache): it is marked
``lower_bounds``, so ``python -m pytest -m "not lower_bounds"`` leaves it out; ``.ci/run`` runs it.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "tests" / "lower-bounds.txt"
# test files that are not unit tests of the library: notebooks, site, student edition, Colab
# install and benchmarks need the book toolchain (or are themselves installs/timings)
NOT_UNIT = {"test_notebooks.py", "test_site.py", "test_student_edition.py", "test_colab_install.py",
            "test_benchmarks.py", "test_lower_bounds.py"}
# ... and any other test file that imports the book toolchain is left out too
TOOLCHAIN = re.compile(r"^\s*(import|from)\s+(playwright|nbval|nbformat|nbclient|jupyter_book|sphinx)\b", re.M)
# companions that must carry the same version as a declared package
SAME_VERSION = {"jax": ["jaxlib"]}


def lowest_versions() -> dict[str, str]:
    """``{package: lowest declared version}`` from pyproject.toml's dependencies, jaxlib added."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lowest = {}
    for dep in deps:
        req = Requirement(dep)
        if req.marker is not None and not req.marker.evaluate():
            continue
        bounds = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        assert len(bounds) == 1, f"{dep!r}: expected exactly one lower bound (>=), found {req.specifier}"
        lowest[req.name.lower()] = bounds[0]
    for name, companions in SAME_VERSION.items():
        for companion in companions:
            if name in lowest:
                lowest.setdefault(companion, lowest[name])
    return lowest


def unit_test_files() -> list[str]:
    files = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name not in NOT_UNIT and not TOOLCHAIN.search(path.read_text()):
            files.append(str(path.relative_to(ROOT)))
    return files


def _run(cmd, *, what: str, timeout: float, env=None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-4000:]
        pytest.fail(f"{what}: no result within {timeout:.0f} s\n{out!r}", pytrace=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-6000:]
        pytest.fail(f"{what} failed (exit code {proc.returncode}): {' '.join(map(str, cmd))}\n...\n{tail}",
                    pytrace=False)
    return proc


def test_declared_lower_bounds_exist():
    lowest = lowest_versions()
    assert {"jax", "jaxlib", "optax", "diffrax", "numpy", "matplotlib", "ipywidgets"} <= set(lowest)
    assert lowest["jaxlib"] == lowest["jax"]
    files = unit_test_files()
    assert "tests/test_flows.py" in files and not NOT_UNIT & {pathlib.Path(f).name for f in files}


@pytest.mark.lower_bounds
def test_unit_tests_pass_with_the_lowest_declared_versions(tmp_path):
    lowest = lowest_versions()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    # the inner environment: this one's, but no PYTHONPATH/PYTHONHOME and no other venv active
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    times = {}

    t0 = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)], what="creating the virtual environment", timeout=300)
    pins = [f"{name}=={version}" for name, version in lowest.items()]
    # pip's cache is used (no --no-cache-dir): a second run installs from it
    _run([python, "-m", "pip", "install", "-c", CONSTRAINTS, *pins, "pytest"], env=env, timeout=900,
         what=f"installing the lowest declared versions ({', '.join(pins)})")
    _run([python, "-m", "pip", "install", "--no-deps", "-e", ROOT], env=env, timeout=300,
         what="installing dyncore from this checkout")
    times["venv and install"] = time.perf_counter() - t0

    probe = ("import importlib.metadata as m, json, sys\n"
             "names = json.loads(sys.argv[1])\n"
             "import dyncore\n"
             "print(json.dumps({'versions': {n: m.version(n) for n in names}, 'dyncore': dyncore.__file__}))\n")
    found = json.loads(_run([python, "-c", probe, json.dumps(sorted(lowest))], env=env, timeout=300,
                            what="reading the installed versions").stdout.strip().splitlines()[-1])
    wrong = {n: (v, found["versions"][n]) for n, v in lowest.items() if Version(found["versions"][n]) != Version(v)}
    assert not wrong, f"installed versions differ from the lowest declared ones (declared, installed): {wrong}"
    assert pathlib.Path(found["dyncore"]).resolve().is_relative_to(ROOT / "src"), found["dyncore"]
    freeze = _run([python, "-m", "pip", "freeze", "--exclude-editable"], env=env, timeout=120,
                  what="pip freeze").stdout

    # the library's unit tests and doctests; addopts (nbval's options) replaced, the ini's
    # doctest_optionflags kept
    t0 = time.perf_counter()
    cmd = [python, "-m", "pytest", *unit_test_files(), "--doctest-modules", "src/dyncore",
           "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-o", "addopts=",
           "-p", "no:nbval", "-p", "no:cacheprovider", "-q", "-m", "not perf and not lower_bounds",
           "--durations=5"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the unit tests did not finish within 1200 s:\n{(e.stdout or b'')[-4000:]!r}", pytrace=False)
    times["unit tests"] = time.perf_counter() - t0
    print(f"lower bounds: {', '.join(pins)}; durations: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    assert proc.returncode == 0, (
        f"the unit tests fail with the lowest declared versions ({', '.join(pins)}); exit code "
        f"{proc.returncode}\n--- environment (pip freeze) ---\n{freeze}\n--- pytest output (tail) ---\n"
        f"{(proc.stdout + proc.stderr)[-8000:]}")
