"""Build the student edition of the book: every exercise, no solutions.

    python tools/student_edition.py                   # executes the notebooks, like the main build
    python tools/student_edition.py --no-execute      # text only (fast; what the tests use)
    python tools/student_edition.py --notebooks-only  # only the stripped notebooks, in a second

It writes a copy of ``_config.yml`` with sphinx-exercise's ``hide_solutions: true`` (the local
extension ``book/_ext/hidden_solutions.py`` makes that remove the gated solutions with their
code cells too) and builds the site into ``_build/student/_build/html`` (or ``--output DIR``).

It also writes the chapters' notebooks without their solutions to ``_build/student/notebooks``:
the ``{solution}`` blocks are cut out of the text, and each gated coding solution (its text and
code cells, from ``{solution-start}`` to ``{solution-end}``) is replaced by one empty code cell
for the student's answer. Those are the files to hand out, or to upload for Colab: the book's
Colab button opens the repository's notebooks, solutions included. The repository itself is not
modified.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def student_config(execute: bool, hide_solutions: bool = True) -> dict:
    """The book's configuration with solutions hidden (and execution switched off if asked)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if hide_solutions:
        config["title"] = f"{config['title']} (student edition)"
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["hide_solutions"] = hide_solutions
    if hide_solutions:
        # the pages' download button would serve the notebooks, solution cells included
        sphinx_config["html_copy_source"] = False
    if not execute:
        config.setdefault("execute", {})["execute_notebooks"] = "off"
        # without execution the code cells draw no figures, so the figures' labels do not exist and
        # every {numref} to one would warn; the executed builds (the book's, -W -n) check them
        sphinx_config["suppress_warnings"] = [*sphinx_config.get("suppress_warnings", []), "ref.numref"]
    return config


SOLUTION_BLOCK = re.compile(r"(`{3,})\{solution\}[^\n]*\n.*?\n\1[ \t]*(\n|$)", re.S)
GATE_START = re.compile(r"(`{3,})\{solution-start\}[^\n]*\n")
GATE_END = re.compile(r"(`{3,})\{solution-end\}[^\n]*\n(?:.*?\n)??\1[ \t]*(\n|$)", re.S)
ANSWER_CELL = "# Your solution here.\n"


def _markdown(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def strip_solutions(nb: dict) -> dict:
    """A copy of notebook ``nb`` (nbformat 4, as a dict) without its solutions.

    Removes every ``{solution}`` block from the markdown cells, and replaces every gated solution,
    from the ``{solution-start}`` fence to the end of the ``{solution-end}`` fence (text and code
    cells), by one empty code cell; the exercises and all other cells are kept as they are.
    Outputs are cleared.

    Raises:
      ValueError: for a ``{solution-start}`` without its ``{solution-end}``.
    """
    out = copy.deepcopy(nb)
    cells, gated = [], False
    for cell in out["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            if not gated:
                cells.append({**cell, "source": source, "outputs": [], "execution_count": None})
            continue
        if gated:  # inside a gated solution: skip up to the end of its closing fence
            end = GATE_END.search(source)
            if end is None:
                continue
            source, gated = source[end.end():], False
        source = SOLUTION_BLOCK.sub("", source)
        start = GATE_START.search(source)
        if start is not None:
            before, rest = source[: start.start()], source[start.start():]
            end = GATE_END.search(rest)
            gated = end is None
            after = "" if end is None else rest[end.end():]
            if before.strip():
                cells.append({**cell, "source": before.rstrip() + "\n"})
            cells.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                          "source": ANSWER_CELL})
            source = after
        source = re.sub(r"\n{3,}", "\n\n", source)  # where a solution was cut out
        if source.strip():
            cells.append({**cell, "source": source.strip("\n") + "\n"})
    if gated:
        raise ValueError("a {solution-start} without its {solution-end}")
    seen: set[str] = set()
    for i, cell in enumerate(cells):  # split cells and answer cells need ids of their own
        if out.get("nbformat_minor", 0) >= 5 or "id" in cell:
            cell_id = cell.get("id") or f"answer-{i}"
            while cell_id in seen:
                cell_id = f"{cell_id}-{i}"
            cell["id"] = cell_id
            seen.add(cell_id)
    out["cells"] = cells
    return out


def write_student_notebooks(output: pathlib.Path) -> list[pathlib.Path]:
    """Write every chapter without its solutions to ``output`` (created if needed)."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = strip_solutions(json.loads(path.read_text()))
        target = output / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true", help="do not execute the notebooks")
    parser.add_argument("--output", default=str(ROOT / "_build" / "student"), help="output folder")
    parser.add_argument("-W", action="store_true", help="turn warnings into errors")
    parser.add_argument(
        "--keep-solutions",
        action="store_true",
        help="build with the same settings but keep the solutions (the tests' control)",
    )
    parser.add_argument("--notebooks-only", action="store_true", help="only write the stripped notebooks")
    args = parser.parse_args(argv)
    if not args.keep_solutions:
        notebooks = write_student_notebooks(pathlib.Path(args.output) / "notebooks")
        print(f"student notebooks: {len(notebooks)} in {notebooks[0].parent}")
        if args.notebooks_only:
            return 0
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="_config_student_", dir=ROOT) as f:
        config = student_config(not args.no_execute, hide_solutions=not args.keep_solutions)
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
        f.flush()
        jb = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
        cmd = [*jb, "build", str(ROOT), "--config", f.name, "--path-output", args.output]
        if args.W:
            cmd += ["-W", "-n", "--keep-going"]
        print("+ jupyter-book", " ".join(cmd[3:]), flush=True)
        result = subprocess.run(cmd)
    if result.returncode == 0:
        print(f"student edition: {pathlib.Path(args.output) / '_build' / 'html' / 'index.html'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
