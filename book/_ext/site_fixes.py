"""Small fixes to the HTML pages that the browser tests found (tests/test_site.py).

* sphinx-thebe and sphinx-togglebutton register their inline configuration scripts twice (seen
  with Sphinx 7.4 and Jupyter Book 1.0.4), so every page declared ``const THEBE_JS_URL`` twice and
  logged a SyntaxError. After the build, a repeated identical ``<script>`` line in a page's
  ``<head>`` is removed.
* The site's root ``index.html`` is a bare ``<meta>`` redirect to the introduction (written by
  sphinx-external-toc when the build finishes). Without a ``<link rel="icon">`` Chromium asks for
  ``/favicon.ico`` there and logs a 404; the redirect becomes a small page that names the book's
  icon, then redirects as before.
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


_REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)" />')


def with_icon(text: str, icon: str = "_static/favicon.png") -> str:
    """A bare ``<meta>`` redirect page as a full page with an icon link; any other page unchanged."""
    match = _REDIRECT.search(text)
    if match is None or "<html" in text.lower():
        return text
    url = match.group(1)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<link rel="icon" href="{icon}">\n{match.group(0)}\n<title>dyncore-book</title>\n</head>\n'
        f'<body><p><a href="{url}">dyncore-book</a></p></body>\n</html>\n'
    )


def _fix_root_redirect(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    index = pathlib.Path(app.outdir) / "index.html"
    if index.exists() and (pathlib.Path(app.outdir) / "_static" / "favicon.png").exists():
        text = index.read_text(encoding="utf8")
        fixed = with_icon(text)
        if fixed != text:
            index.write_text(fixed, encoding="utf8")


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
    # after sphinx-external-toc has written the root redirect (its handler has the default priority)
    app.connect("build-finished", _fix_root_redirect, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
