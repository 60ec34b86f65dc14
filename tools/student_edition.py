"""Build the student edition of the book: every exercise, no solutions.

    python tools/student_edition.py            # executes the notebooks, like the main build
    python tools/student_edition.py --no-execute   # text only (fast; what the tests use)

It writes a copy of ``_config.yml`` with sphinx-exercise's ``hide_solutions: true`` (the local
extension ``book/_ext/hidden_solutions.py`` makes that remove the gated solutions with their
code cells too) and builds into ``_build/student/html`` (or ``--output DIR``). The repository
itself is not modified.
"""

from __future__ import annotations

import argparse
import pathlib
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
    return config


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
    args = parser.parse_args(argv)
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
