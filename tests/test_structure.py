"""The reader design of CONTRIBUTING.md ("How a chapter is built"), held for every converted chapter.

A chapter's narrative has at most 3,500 words of prose before its exercises, at least three static
figures with captions, a verification appendix in the table of contents, the book's figure style,
and (chapters 2-6) an "On a real network" section with its own figure. Chapters not yet converted
are listed as pending: a strict xfail naming the issue that converts them, so that the suite says
honestly what is left and notices when a chapter starts to pass.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
# chapter stem -> the issue that converts it (a strict xfail until then); none left since issues 19-21
PENDING: dict[str, str] = {}
MAX_WORDS = 3500
MIN_FIGURES = 3
EXERCISES = re.compile(r"^#+\s+Exercises", re.M)
REAL_NETWORK = re.compile(r"^##\s+On a real network\s*$", re.M)


def _cells(stem: str, folder: pathlib.Path = BOOK) -> list[dict]:
    return json.loads((folder / f"{stem}.ipynb").read_text())["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"])


def _narrative(cells: list[dict]) -> list[dict]:
    """The cells before the Exercises heading (cells, as stored: the heading's own cell included)."""
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown" and EXERCISES.search(_src(c)):
            return cells[: i + 1]
    return cells


def _prose_before_exercises(cells: list[dict]) -> list[str]:
    """The markdown text of the narrative, up to the Exercises heading itself."""
    texts = []
    for c in cells:
        if c["cell_type"] != "markdown":
            continue
        src = _src(c)
        heading = EXERCISES.search(src)
        texts.append(src[: heading.start()] if heading else src)
        if heading:
            break
    return texts


def prose_words(text: str) -> int:
    """Words of markdown prose, display math excluded (``$$...$$`` and ``{math}`` blocks).

    Everything else counts, the text inside admonitions, theorems and proofs included; only the
    fence and option lines of a directive and HTML comments are not words.
    """
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"(`{3,}|:{3,})\{math\}.*?\1", " ", text, flags=re.S)
    text = re.sub(r"^(`{3,}|:{3,}).*$", " ", text, flags=re.M)
    text = re.sub(r"^:[\w-]+:.*$", " ", text, flags=re.M)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    return len(text.split())


def narrative_words(cells: list[dict]) -> int:
    return sum(prose_words(t) for t in _prose_before_exercises(cells))


def is_static_figure(cell: dict) -> bool:
    """A matplotlib figure (not a slider figure) with hidden code and a caption in its metadata."""
    if cell["cell_type"] != "code":
        return False
    src = _src(cell)
    meta = cell.get("metadata", {})
    caption = meta.get("mystnb", {}).get("figure", {}).get("caption", "")
    return (
        "plt.show()" in src
        and "slider_figure" not in src
        and "hide-input" in meta.get("tags", [])
        and len(caption.split()) >= 5
    )


def structure_problems(stem: str) -> list[str]:
    """Everything in which chapter ``stem`` departs from the design (an empty list: none)."""
    cells = _cells(stem)
    narrative = _narrative(cells)
    problems = []
    if not any(c["cell_type"] == "markdown" and EXERCISES.search(_src(c)) for c in cells):
        problems.append("no Exercises heading")
    words = narrative_words(cells)
    if words > MAX_WORDS:
        problems.append(f"{words} words of prose before the exercises (at most {MAX_WORDS})")
    figures = [c for c in narrative if is_static_figure(c)]
    if len(figures) < MIN_FIGURES:
        problems.append(f"{len(figures)} captioned static figures (at least {MIN_FIGURES})")
    first_code = next(_src(c) for c in cells if c["cell_type"] == "code")
    if "use_book_style()" not in first_code:
        problems.append("the first code cell does not call dc.figures.use_book_style()")
    toc = (ROOT / "_toc.yml").read_text()
    if not (BOOK / "verification" / f"{stem}.ipynb").exists():
        problems.append(f"no verification appendix book/verification/{stem}.ipynb")
    elif f"file: book/verification/{stem}" not in toc.split("caption: Verification", 1)[-1]:
        problems.append("its verification appendix is not in the Verification part of _toc.yml")
    if int(stem[:2]) >= 2:
        starts = [i for i, c in enumerate(narrative) if c["cell_type"] == "markdown" and REAL_NETWORK.search(_src(c))]
        if not starts:
            problems.append('no "On a real network" section in the narrative')
        elif not any(is_static_figure(c) for c in narrative[starts[0]:]):
            problems.append('the "On a real network" section has no captioned figure')
    return problems


@pytest.mark.parametrize(
    "stem",
    [
        pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=PENDING[s])) if s in PENDING else s
        for s in CHAPTERS
    ],
)
def test_chapter_follows_the_reader_design(stem):
    problems = structure_problems(stem)
    assert not problems, f"{stem}: " + "; ".join(problems)


def test_every_chapter_is_either_converted_or_pending_with_an_issue():
    assert CHAPTERS, "book/ has no chapters"
    assert set(PENDING) <= set(CHAPTERS), "a pending chapter that does not exist"


def test_the_notation_page_is_in_the_toc():
    assert (BOOK / "notation.md").exists()
    assert "file: book/notation" in (ROOT / "_toc.yml").read_text()


def test_the_structure_checks_can_fail():
    """The counters see what they claim to: prose without math, captioned figures only."""
    assert prose_words("one two $$x + y = z$$ three four") == 4
    # the prose of a directive counts; its fences and options do not
    assert prose_words("```{admonition} Notes\n:class: note\n\nfive words in a box\n```") == 5
    fig = {"cell_type": "code", "source": ["plt.plot(x)\n", "plt.show()"],
           "metadata": {"tags": ["hide-input"], "mystnb": {"figure": {"caption": "GD tracks the flow closely."}}}}
    assert is_static_figure(fig)
    assert not is_static_figure({**fig, "metadata": {"tags": ["hide-input"]}})
    assert not is_static_figure({**fig, "source": ["dc.slider_figure(c, d, s)\n", "plt.show()"]})
    cells = [{"cell_type": "markdown", "source": ["word " * 10]},
             {"cell_type": "markdown", "source": ["word " * 3, "\n## Exercises\n", "word " * 5000]}]
    assert narrative_words(cells) == 13
