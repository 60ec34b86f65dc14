"""Repository-level checks on the book's notebooks (nbval executes them; these check how they are stored)."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_toc(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"file: book/{path.stem}" in toc, f"{path.name} is not in _toc.yml, so the book never builds it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_sets_up_dyncore_and_float64(path):
    nb = json.loads(path.read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    assert "import dyncore" in first and "pip install" in first, "the first code cell must import dyncore and install it when missing (Colab)"
    assert first.index("jax_enable_x64") < first.index("import dyncore"), "enable float64 before dyncore creates any array"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_its_claims(path):
    """A chapter that makes no measured-versus-predicted check is not a chapter of this book."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "dc.check" in code, f"{path.name} never calls dc.check / dc.check_slope"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_trailing_semicolon_output_suppression(path):
    """nbval runs cells with store_history=False, where a trailing ';' does not suppress output."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            last = "".join(c["source"]).rstrip().splitlines()[-1] if "".join(c["source"]).strip() else ""
            assert not last.endswith(";"), f"{path.name}: end the cell with plt.show() or `_ = ...`, not ';'"
