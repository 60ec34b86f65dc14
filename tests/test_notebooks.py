"""Repository-level checks on the book's notebooks (nbval executes them; these check how they are stored)."""

import ast
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# the chapters and their verification appendices
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "book").as_posix())
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "book").as_posix())
def test_notebook_is_in_the_toc(path):
    toc = (ROOT / "_toc.yml").read_text()
    entry = path.relative_to(ROOT).with_suffix("").as_posix()
    assert f"file: {entry}" in toc, f"{path.name} is not in _toc.yml, so the book never builds it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "book").as_posix())
def test_first_code_cell_sets_up_dyncore_and_float64(path):
    nb = json.loads(path.read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    assert "import dyncore" in first and "pip install" in first, "the first code cell must import dyncore and install it when missing (Colab)"
    assert first.index("jax_enable_x64") < first.index("import dyncore"), "enable float64 before dyncore creates any array"


CHECKS = {"check", "check_slope", "check_bound"}
# cells nbval would not run, or whose errors it would accept
SKIPPING_TAGS = {"nbval-skip", "skip-execution", "raises-exception"}
SKIPPING_COMMENTS = ("# NBVAL_SKIP", "# NBVAL_RAISES_EXCEPTION")
# a try whose handler catches one of these would turn a failed check into a passing cell
HIDING = {"AssertionError", "Exception", "BaseException"}


def _cell_tree(source: str) -> ast.Module:
    """Parse a code cell; IPython magics and shell lines become ``pass`` (same indentation)."""
    lines = [line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def _is_check(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "dc" and node.func.attr in CHECKS)


def _hides_failures(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(t is None or (isinstance(t, ast.Name) and t.id in HIDING)
               or (isinstance(t, ast.Attribute) and t.attr in HIDING) for t in names)


def _executed_checks(tree: ast.AST, hidden: bool = False, deferred: bool = False):
    """Yield (check call, hidden by a try, inside a def or lambda) for every dc.check* call in ``tree``."""
    if _is_check(tree):
        yield tree, hidden, deferred
    if isinstance(tree, ast.Try):
        hides = any(_hides_failures(h) for h in tree.handlers)
        for stmt in tree.body:
            yield from _executed_checks(stmt, hidden or hides, deferred)
        for stmt in [*tree.handlers, *tree.orelse, *tree.finalbody]:
            yield from _executed_checks(stmt, hidden, deferred)
        return
    inner = deferred or isinstance(tree, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    for child in ast.iter_child_nodes(tree):
        yield from _executed_checks(child, hidden, inner)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "book").as_posix())
def test_notebook_checks_its_claims(path):
    """A chapter that makes no measured-versus-predicted check is not a chapter of this book.

    The checks must be code that runs when nbval executes the cell (not text in a comment or a
    string, not only inside a function that may never be called, not in a cell nbval skips or
    lets fail), and no check may sit in a ``try`` whose handler would swallow its AssertionError.
    """
    nb = json.loads(path.read_text())
    executed, hidden = 0, []
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or source.lstrip().startswith(SKIPPING_COMMENTS):
            continue
        if SKIPPING_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for call, is_hidden, is_deferred in _executed_checks(_cell_tree(source)):
            if is_hidden:
                hidden.append(f"cell {i}, line {call.lineno}")
            elif not is_deferred:
                executed += 1
    assert not hidden, f"{path.name}: dc.check calls whose failure a try/except would hide: {hidden}"
    assert executed > 0, f"{path.name} never runs a dc.check / dc.check_slope / dc.check_bound call"


def test_the_check_finder_can_fail():
    """The parser above sees only executed, unhidden calls: comments, strings and swallowed checks do not count."""
    count = lambda src: [(h, d) for _, h, d in _executed_checks(_cell_tree(src))]  # noqa: E731
    assert count("# dc.check('x', 1, 1, rtol=1e-9)\ns = \"dc.check(1)\"") == []
    assert count("dc.check('x', 1.0, 1.0, rtol=1e-9)") == [(False, False)]
    assert count("%time dc.check('x', 1, 1, rtol=1)\nfor k in range(2):\n    dc.check_slope('s', 1, 1, atol=1)") == [
        (False, False)]  # the magic line is not parsed as Python; the loop body is
    assert count("def f():\n    dc.check_bound('b', 1, upper=2)") == [(False, True)]
    assert count("try:\n    dc.check('x', 1, 2, rtol=0.1)\nexcept AssertionError:\n    pass") == [(True, False)]
    assert count("try:\n    dc.check('x', 1, 2, rtol=0.1)\nexcept (ValueError, Exception):\n    pass") == [(True, False)]
    assert count("try:\n    dc.check('x', 1, 2, rtol=0.1)\nexcept ValueError:\n    pass") == [(False, False)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "book").as_posix())
def test_no_trailing_semicolon_output_suppression(path):
    """nbval runs cells with store_history=False, where a trailing ';' does not suppress output."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            last = "".join(c["source"]).rstrip().splitlines()[-1] if "".join(c["source"]).strip() else ""
            assert not last.endswith(";"), f"{path.name}: end the cell with plt.show() or `_ = ...`, not ';'"
