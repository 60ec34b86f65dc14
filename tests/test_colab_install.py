"""The chapters' first cell installs dyncore when it is missing, without replacing the JAX it finds.

This is what happens in Colab: JAX, NumPy, matplotlib and ipywidgets 7 are preinstalled, dyncore
is not. The test builds a wheel of this checkout, makes a fresh virtual environment that sees every
package of the current one *except* dyncore (as Colab sees its own JAX), and runs a chapter's
first cell there in IPython, with the repository URL replaced by the wheel. pip may not use an
index (``PIP_NO_INDEX``), so the install succeeds only if dyncore's lower bounds are already met.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
URL = "git+https://github.com/dyncore-book/dyncore-book.git"
# Colab's ipywidgets (7.x, with the one package it needs to import); dyncore's bound (>= 7.6)
# keeps it, and the live figures must work with it
COLAB_WIDGETS = ["ipywidgets==7.7.1", "ipython-genutils==0.2.0"]


def _first_cell(stem: str) -> str:
    nb = json.loads((ROOT / "book" / f"{stem}.ipynb").read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("colab")
    wheels = tmp / "wheels"
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True)
    source = tmp / "source"  # build from a copy: setuptools leaves a build/ folder behind
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source))
    (wheel,) = wheels.glob("dyncore-*.whl")
    # the "preinstalled" packages: the current environment's, minus dyncore
    shared = tmp / "preinstalled"
    shared.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not re.match(r"(_*editable_*\.)?_?dyncore", entry.name, flags=re.I):
            (shared / entry.name).symlink_to(entry)
    env_dir = tmp / "venv"
    run(sys.executable, "-m", "venv", str(env_dir))
    python = env_dir / "bin" / "python"
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    pathlib.Path(purelib, "colab_preinstalled.pth").write_text(f"{shared}\n")
    return python, wheel, pathlib.Path(purelib)


def test_first_cell_installs_dyncore_from_the_repository_when_missing(colab):
    python, wheel, purelib = colab
    cell = _first_cell("01_gradient_flow")
    assert URL in cell, "the install cell must install from the repository's main branch"
    before = subprocess.run([str(python), "-c", "import dyncore"], capture_output=True, text=True)
    assert before.returncode != 0 and "No module named 'dyncore'" in before.stderr
    probe = (
        "\nimport jax, dyncore\n"
        "print('RESULT', jax.__version__, jax.__file__, dyncore.__file__, dyncore.check)\n"
    )
    # as if the fresh environment were activated: IPython adds the site-packages of $VIRTUAL_ENV
    # (here, possibly the test runner's own environment) to sys.path
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "VIRTUAL_ENV": str(python.parent.parent), "PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(python), "-m", "IPython", "--quick", "--no-banner", "-c", cell.replace(URL, str(wheel)) + probe],
        capture_output=True, text=True, env=env, cwd=purelib.parent,
    )
    out = result.stdout + result.stderr
    line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
    assert result.returncode == 0 and line, out[-3000:]
    _, version, jax_file, dyncore_file, _ = line.split(" ", 4)
    assert version == jax.__version__, "installing dyncore replaced the preinstalled JAX"
    assert "preinstalled" in jax_file, f"JAX now loads from {jax_file}, not the preinstalled one"
    assert pathlib.Path(dyncore_file).is_relative_to(purelib), f"dyncore loads from {dyncore_file}"
    installed = sorted(p.name for p in purelib.iterdir() if p.name.endswith(".dist-info"))
    assert [n for n in installed if not n.startswith(("pip-", "setuptools-"))] == [f"dyncore-{wheel.name.split('-')[1]}.dist-info"]


LIVE_FIGURE = """
import os, ipywidgets, dyncore
os.environ["DYNCORE_FIGURES"] = "live"
fig = dyncore.slider_figure(lambda eta: 2 * eta, lambda ax, r, **k: ax.plot([0, float(r)]),
                            [dyncore.Slider("eta", [0.1, 0.2])])
bundle = fig._repr_mimebundle_()
view = bundle["application/vnd.jupyter.widget-view+json"]
print("WIDGETS", ipywidgets.__version__, view["version_major"], bool(view["model_id"]), "text/html" in bundle)
"""


def test_live_figures_work_with_colabs_ipywidgets_7(tmp_path):
    """ipywidgets 7 widgets have no _repr_mimebundle_; the figure must still give a widget view."""
    target = tmp_path / "widgets7"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), *COLAB_WIDGETS],
                   check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT / "src")])}
    result = subprocess.run([sys.executable, "-c", LIVE_FIGURE], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("WIDGETS"))
    assert line.split() == ["WIDGETS", "7.7.1", "2", "True", "False"], line


# matplotlib before 3.11 (Colab's) rasterizes a whole string at a rounded pixel position, 3.11
# glyph by glyph at 1/64 px: the slider figures' text cache must reproduce both
OLDER_MATPLOTLIB = "matplotlib==3.10.*"


def test_text_cache_matches_an_older_matplotlibs_own_drawing(tmp_path):
    target = tmp_path / "mpl"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    OLDER_MATPLOTLIB], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT / "src")])}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "text_cache",
           str(ROOT / "tests" / "test_figures.py"), "-s"]
    check = "import matplotlib; print('MPL', matplotlib.__version__)"
    version = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env).stdout
    assert version.startswith("MPL 3.10."), version
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout

def _install_part(cell: str) -> str:
    """The first cell without its style line (chapters not yet on the reader design lack it)."""
    return "\n".join(line for line in cell.rstrip().splitlines() if line.strip() != "dc.figures.use_book_style()").rstrip()


@pytest.mark.parametrize("stem", sorted(p.stem for p in (ROOT / "book").glob("*.ipynb")))
def test_every_chapter_uses_the_same_install_cell(stem):
    ours, first = _install_part(_first_cell(stem)), _install_part(_first_cell("01_gradient_flow"))
    assert ours == first, f"{stem}: first cell differs from chapter 1's"
