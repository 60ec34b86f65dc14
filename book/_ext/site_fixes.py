"""Small fixes to the HTML pages that the browser tests found (tests/test_site.py).

* sphinx-thebe and sphinx-togglebutton register their inline configuration scripts twice (seen
  with Sphinx 7.4 and Jupyter Book 1.0.4), so every page declared ``const THEBE_JS_URL`` twice and
  logged a SyntaxError. After the build, a repeated identical ``<script>`` line in a page's
  ``<head>`` is removed.
"""

import pathlib
import re

_SCRIPT = re.compile(r"^\s*<script\b.*</script>\s*$")


def dedupe_head_scripts(text: str) -> str:
    """Drop every ``<script>`` line of the ``<head>`` that repeats an earlier one exactly."""
    head, sep, body = text.partition("</head>")
    if not sep:
        return text
    seen, lines = set(), []
    for line in head.split("\n"):
        if _SCRIPT.match(line):
            if line.strip() in seen:
                continue
            seen.add(line.strip())
        lines.append(line)
    return "\n".join(lines) + sep + body


def _fix_pages(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for page in pathlib.Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf8")
        fixed = dedupe_head_scripts(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf8")


def setup(app):
    app.connect("build-finished", _fix_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
