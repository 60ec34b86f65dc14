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
