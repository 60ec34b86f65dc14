"""The student edition (``python tools/student_edition.py``) keeps every exercise and no solution.

Both editions are built without executing the notebooks (the solutions' prose and code are in the
sources; executing them is the main build's and nbval's job). The edition with solutions is the
control: every phrase looked for must be found there, so the test cannot pass vacuously.
"""

from __future__ import annotations

import html
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _cells(path: pathlib.Path) -> list[tuple[str, str]]:
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def _phrases(text: str) -> list[str]:
    """Runs of six plain words (no maths, code or markup in between) from a piece of prose."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\{[a-z:-]+\}|\[[^\]]*\]\([^)]*\)", " | ", text, flags=re.S)
    runs = []
    for chunk in re.split(r"[|\n*_()\[\]:;\"]", text):
        words = chunk.split()
        if len(words) >= 6 and all(re.fullmatch(r"[A-Za-z][A-Za-z',.-]*", w) for w in words[:6]):
            runs.append(" ".join(words[:6]).rstrip(",."))
    return runs


def solutions(path: pathlib.Path) -> tuple[list[str], list[str], list[str]]:
    """(exercise labels, solution prose phrases, solution code lines) of one notebook."""
    labels, prose, code, other_code = [], [], [], set()
    gated = False
    for kind, src in _cells(path):
        if kind == "code" and not gated:
            other_code.update(line.strip() for line in src.splitlines())
        if kind == "markdown":
            labels += re.findall(r"```+\{exercise\}[^\n]*\n:label: ([\w-]+)", src)
            for body in re.findall(r"(````+)\{solution\}[^\n]*\n(.*?)\n\1", src, flags=re.S):
                prose += _phrases(re.sub(r"^:\w+:.*$", "", body[1], flags=re.M))
            if "{solution-start}" in src:
                gated = True
                after = src.split("{solution-start}", 1)[1].split("\n", 1)[1]
                prose += _phrases(re.sub(r"^:\w+:.*$|^`+$", "", after, flags=re.M))
            if "{solution-end}" in src:
                gated = False
        elif gated:
            code += [line.strip() for line in src.splitlines() if len(line.strip()) >= 25]
    # a line that also occurs outside the solutions (a call the chapter makes too) proves nothing
    return labels, prose, [line for line in code if line not in other_code]


def _build(tmp: pathlib.Path, *flags: str) -> pathlib.Path:
    cmd = [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--no-execute", "-W", "--output", str(tmp), *flags]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp / "_build" / "html"


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    student = _build(tmp_path_factory.mktemp("student"))
    teacher = _build(tmp_path_factory.mktemp("teacher"), "--keep-solutions")
    return student, teacher


def _page_text(site: pathlib.Path, nb: pathlib.Path) -> tuple[str, str]:
    raw = (site / "book" / f"{nb.stem}.html").read_text()
    body = raw.split('<article class="bd-article"', 1)[-1]
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    text = text.translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))  # undo smart quotes
    return raw, re.sub(r"\s+", " ", text)


def test_every_chapter_has_exercises_with_solutions_and_a_checked_coding_exercise():
    for nb in NOTEBOOKS:
        labels, prose, code = solutions(nb)
        assert len(labels) >= 4, f"{nb.name}: {len(labels)} exercises, the book promises at least 4"
        assert len(prose) >= len(labels), f"{nb.name}: fewer solution phrases than exercises"
        assert code, f"{nb.name}: no coding exercise with a gated (executed) solution"
        solution_code = "\n".join(code)
        assert "dc.check" in solution_code, f"{nb.name}: the coding exercise's solution checks nothing"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_has_the_exercises_and_no_solution(nb, editions):
    student, teacher = editions
    labels, prose, code = solutions(nb)
    s_raw, s_text = _page_text(student, nb)
    t_raw, t_text = _page_text(teacher, nb)
    for label in labels:
        assert f'id="{label}"' in s_raw, f"exercise {label} is missing from the student edition"
    assert 'class="solution' in t_raw and 'class="solution' not in s_raw
    for phrase in prose:
        assert phrase in t_text, f"control failed: {phrase!r} not found in the edition with solutions"
        assert phrase not in s_text, f"solution text {phrase!r} leaks into the student edition"
    for line in code:
        assert re.sub(r"\s+", " ", line) in t_text, f"control failed: solution code {line!r} not found"
        assert re.sub(r"\s+", " ", line) not in s_text, f"solution code {line!r} leaks into the student edition"


# ----------------------------------------------------------------------------- stripped notebooks
sys.path.insert(0, str(ROOT / "tools"))
import student_edition  # noqa: E402


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebooks_keep_every_exercise_and_lose_every_solution(nb):
    import nbformat

    original = json.loads(nb.read_text())
    stripped = student_edition.strip_solutions(original)
    nbformat.validate(nbformat.from_dict(stripped))
    ids = [c["id"] for c in stripped["cells"]]
    assert len(set(ids)) == len(ids)
    labels, prose, code = solutions(nb)
    text = "\n".join(c["source"] for c in stripped["cells"])
    for label in labels:
        assert f":label: {label}" in text, f"exercise {label} lost"
    assert "{solution" not in text
    flat = re.sub(r"\s+", " ", text)
    for phrase in prose:
        assert phrase not in flat, f"solution text {phrase!r} left in the student notebook"
    for line in code:
        assert line not in text, f"solution code {line!r} left in the student notebook"
    # the other code cells are kept, in order, and one empty answer cell replaces each gated solution
    answer = student_edition.ANSWER_CELL
    kept = [c["source"] for c in stripped["cells"] if c["cell_type"] == "code"]
    gated, expected = False, []
    for kind, src in _cells(nb):
        if kind == "markdown" and "{solution-start}" in src:
            gated = True
            expected.append(answer)
        if kind == "markdown" and "{solution-end}" in src:
            gated = False
        if kind == "code" and not gated:
            expected.append(src)
    assert kept == expected
    assert kept.count(answer) == sum("{solution-start}" in s for k, s in _cells(nb) if k == "markdown") >= 1
    # nothing after an answer cell can depend on a removed solution: no other code follows
    first = kept.index(answer)
    assert all(src == answer for src in kept[first:])


def test_strip_solutions_on_a_small_notebook():
    md = lambda s: {"cell_type": "markdown", "metadata": {}, "source": s}  # noqa: E731
    code = lambda s: {"cell_type": "code", "metadata": {}, "source": s, "outputs": [1], "execution_count": 3}  # noqa: E731
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        md("Intro.\n\n```{exercise} A\n:label: ex-a\nDo A.\n```\n\n````{solution} ex-a\n:class: dropdown\nSecret A.\n````\n\nAfter A."),
        code("x = 1"),
        md("```{exercise} B\n:label: ex-b\nDo B.\n```\n\n````{solution-start} ex-b\n:class: dropdown\n````\n\nSecret B."),
        code("secret = 2"),
        md("````{solution-end}\n````\n\nThe end."),
    ]}
    out = student_edition.strip_solutions(nb)
    assert [c["source"] for c in out["cells"]] == [
        "Intro.\n\n```{exercise} A\n:label: ex-a\nDo A.\n```\n\nAfter A.\n",
        "x = 1",
        "```{exercise} B\n:label: ex-b\nDo B.\n```\n",
        student_edition.ANSWER_CELL,
        "The end.\n",
    ]
    assert out["cells"][1]["outputs"] == [] and out["cells"][1]["execution_count"] is None
    assert nb["cells"][1]["outputs"] == [1]  # the input is not modified
    with pytest.raises(ValueError, match="without its"):
        student_edition.strip_solutions({**nb, "cells": nb["cells"][:4]})


def test_notebooks_only_writes_one_stripped_notebook_per_chapter(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--notebooks-only", "--output", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert written == [nb.name for nb in NOTEBOOKS]
    assert not (tmp_path / "_build").exists()  # no site was built
    for name in written:
        assert "{solution" not in (tmp_path / "notebooks" / name).read_text()
