"""The built web site, in a real browser (Debian's chromium driven by playwright).

Reads the site in ``_build/html``; when it is missing or older than the sources, the fixture
builds it first (``jupyter-book build . -W -n --keep-going``, several minutes). The README's test
command builds the book before running pytest, so normally the fresh build is reused. Skipped,
with the reason shown, only when no chromium is installed (``apt-get install chromium``).

Every page is served from localhost with every other request blocked, as for a reader offline.
Checked on every page: no console error, no request leaving the site, every equation typeset by
MathJax without a TeX error, no dead widget; on every chapter: at least one static slider figure,
each of whose sliders changes the displayed frame, and a Colab button for the notebook on main;
on the API page: every public dyncore function, of the core and of each theory namespace; on every page: internal links resolve.
"""

from __future__ import annotations

import functools
import html.parser
import pathlib
import subprocess
import sys
import urllib.parse

import pytest

import dyncore as dc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import book_pdf  # noqa: E402  (the PDF tool's local server and browser lookup)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
APPENDICES = sorted(p.stem for p in (ROOT / "book" / "verification").glob("*.ipynb"))
SOURCES = [ROOT / "_config.yml", ROOT / "_toc.yml", ROOT / "references.bib"]
SOURCES += [*(ROOT / "book").rglob("*"), *(ROOT / "src" / "dyncore").glob("*.py")]
COLAB = "https://colab.research.google.com/github/dyncore-book/dyncore-book/blob/main/book/{}.ipynb"


def _site_is_fresh() -> bool:
    index = SITE / "index.html"
    if not index.exists():
        return False
    newest = max(p.stat().st_mtime for p in SOURCES if p.is_file())
    return index.stat().st_mtime >= newest


@pytest.fixture(scope="module")
def site() -> pathlib.Path:
    if not _site_is_fresh():
        cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
        cmd += ["build", str(ROOT), "-W", "-n", "--keep-going"]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, "the book build failed:\n" + (result.stdout + result.stderr)[-5000:]
    return SITE


def _pages(site: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))


# ------------------------------------------------------------------ checks without a browser
class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(path: pathlib.Path) -> _Anchors:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf8"))
    return parser


def test_internal_links_resolve(site):
    broken = []
    for page in _pages(site):
        for href in _parse(page).links:
            url = urllib.parse.urlsplit(href)
            if url.scheme or href.startswith(("mailto:", "//", "javascript:")):
                continue
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {href} (no file)")
            elif url.fragment and target.suffix == ".html" and url.fragment not in _parse(target).ids:
                broken.append(f"{page.relative_to(site)} -> {href} (no anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:30])


def test_every_chapter_page_has_a_colab_button_for_its_notebook_on_main(site):
    for stem in CHAPTERS:
        links = _parse(site / "book" / f"{stem}.html").links
        assert COLAB.format(stem) in links, f"{stem}: no Colab button for the notebook on main"


THEORY = ("eom", "scale_invariance", "noether", "principal", "adaptive", "mixing")


def test_api_page_lists_every_public_dyncore_function(site):
    ids = _parse(site / "book" / "api.html").ids
    public = [n for n in dc.__all__ if callable(getattr(dc, n))] if hasattr(dc, "__all__") else []
    public = public or [n for n in dir(dc) if not n.startswith("_") and callable(getattr(dc, n))]
    missing = [n for n in public if not any(i.startswith("dyncore.") and i.endswith("." + n) for i in ids)]
    assert len(public) > 50 and not missing, f"not documented on the API page: {missing}"
    # since issue 18 the theory lives in namespaces (dc.mixing.sgd_chains, ...): each of their
    # public functions has its own entry, under the namespace a reader calls it through
    theory = [f"dyncore.{m}.{n}" for m in THEORY for n in getattr(dc, m).__all__ if callable(getattr(getattr(dc, m), n))]
    missing = [name for name in theory if name not in ids]
    assert len(theory) > 80 and not missing, f"not documented on the API page: {missing}"


# ------------------------------------------------------------------ checks in a browser
@pytest.fixture(scope="module")
def browser():
    path = book_pdf.find_browser()
    if path is None:
        pytest.skip("no chromium installed (apt-get install chromium): the site was not opened in a browser")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(site):
    with book_pdf.serve(site) as url:
        yield url


WAIT_FOR_MATHJAX = """async () => {
  if (!document.querySelector('.math')) return 'no maths';
  for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && MathJax.startup)) return 'MathJax did not load';
  await MathJax.startup.promise;
  return 'typeset';
}"""

MOVE_SLIDERS = """() => {
  const results = [];
  for (const fig of document.querySelectorAll('.dyncore-slider-figure')) {
    const img = fig.querySelector('img');
    for (const input of fig.querySelectorAll('input[type=range]')) {
      const before = img.src, label = input.nextElementSibling.textContent, old = input.value;
      input.value = (input.value === input.max) ? input.min : input.max;
      input.dispatchEvent(new Event('input'));
      results.push({frameChanged: img.src !== before, labelChanged:
                    input.nextElementSibling.textContent !== label, name: input.getAttribute('aria-label')});
      input.value = old; input.dispatchEvent(new Event('input'));
    }
  }
  return results;
}"""


def _open(browser, server, site, page_path):
    page = browser.new_page()
    errors, external = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(server):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{server}/{page_path.relative_to(site).as_posix()}", wait_until="load")
    return page, errors, external


def test_index_redirects_to_the_introduction(site):
    assert 'url=book/intro.html"' in (site / "index.html").read_text()
    assert (site / "book" / "intro.html").exists()


def test_root_page_redirects_in_a_browser_without_console_errors(site, browser, server):
    """The root index.html: Chromium follows the redirect and asks for no missing favicon."""
    page, errors, external = _open(browser, server, site, site / "index.html")
    try:
        page.wait_for_url("**/book/intro.html", timeout=10_000)
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # let late console errors (a 404 for /favicon.ico) arrive
        assert not errors, f"index.html: console errors: {errors[:5]}"
        assert not external, f"index.html: requests leaving the site: {sorted(set(external))[:5]}"
    finally:
        page.close()


@pytest.mark.parametrize("name", ["book/intro", "book/notation", "book/syllabus", "book/api", "book/status", "book/benchmarks", "book/references"]
                         + [f"book/{c}" for c in CHAPTERS] + [f"book/verification/{a}" for a in APPENDICES])
def test_page_in_a_browser(name, site, browser, server):
    path = site / f"{name}.html"
    page, errors, external = _open(browser, server, site, path)
    try:
        state = page.evaluate(WAIT_FOR_MATHJAX)
        assert state in ("typeset", "no maths"), f"{name}: {state}"
        if state == "typeset":
            n_math = page.locator(".math").count()
            n_typeset = page.locator(".math mjx-container, mjx-container.MathJax").count()
            tex_errors = page.locator("mjx-merror").all_text_contents()
            assert not tex_errors, f"{name}: TeX errors in equations: {tex_errors[:5]}"
            assert n_typeset >= n_math > 0, f"{name}: {n_typeset} of {n_math} equations typeset"
        dead = page.locator(".jupyter-widgets, .widget-area, script[type='application/vnd.jupyter.widget-view+json']")
        assert dead.count() == 0, f"{name}: {dead.count()} widget views that cannot work without a kernel"
        body = page.inner_text("body")
        assert "Error displaying widget" not in body and "Loading widget" not in body
        if name.startswith("book/0"):
            moves = page.evaluate(MOVE_SLIDERS)
            assert moves, f"{name}: no static slider figure"
            stuck = [m["name"] for m in moves if not (m["frameChanged"] and m["labelChanged"])]
            assert not stuck, f"{name}: sliders that do not change the figure: {stuck}"
        page.wait_for_timeout(100)  # let late console errors arrive
        assert not errors, f"{name}: console errors: {errors[:5]}"
        assert not external, f"{name}: requests leaving the site: {sorted(set(external))[:5]}"
    finally:
        page.close()


def test_pdf_of_the_book(site, browser, tmp_path):
    """tools/book_pdf.py prints every page of the table of contents into one PDF, in order."""
    from pypdf import PdfReader

    out = tmp_path / "book.pdf"
    cmd = [sys.executable, str(ROOT / "tools" / "book_pdf.py"), "--site", str(site), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    reader = PdfReader(out)
    titles = [item.title for item in reader.outline]
    assert len(titles) == len(book_pdf.toc_pages()) and len(reader.pages) > 100
    chapters = [t for t in titles if "Fast mixing" in t or "Noether" in t]
    assert len(chapters) == 2, titles
