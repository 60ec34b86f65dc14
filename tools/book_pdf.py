"""Print the built book to one PDF with a headless Chromium (Debian's, driven by playwright).

    jupyter-book build .            # first, the HTML site in _build/html
    python tools/book_pdf.py        # then _build/pdf/dyncore-book.pdf

Every page of the table of contents is opened from a local server (nothing is fetched from the
network), its equations are typeset by the site's own MathJax, and it is printed with the
theme's print style; the pages are then joined in the order of ``_toc.yml``. Slider figures
appear at their default frame. No TeX installation is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import pathlib
import shutil
import sys
import threading

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def toc_pages() -> list[str]:
    """The documents of ``_toc.yml`` in reading order (without extensions)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


# paper has no horizontal scroll bar: wrap long code lines and outputs instead of clipping them
PRINT_CSS = "pre, .output pre, .highlight pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def find_browser() -> str | None:
    """The path of a Chromium-family browser on this machine, or None."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@contextlib.contextmanager
def serve(site: pathlib.Path):
    """Serve ``site`` on a free localhost port for the duration of the block; yield its URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def build_pdf(site: pathlib.Path, out: pathlib.Path, browser: str) -> int:
    """Print every page of ``site`` to one PDF at ``out``; return the number of PDF pages."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfWriter

    writer = PdfWriter()
    with serve(site) as server:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
            page = b.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server) else r.abort())
            for doc in toc_pages():
                page.goto(f"{server}/{doc}.html", wait_until="load")
                page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
                page.emulate_media(media="print")
                page.add_style_tag(content=PRINT_CSS)
                pdf = page.pdf(format="A4", print_background=True,
                               margin=dict(top="15mm", bottom="15mm", left="12mm", right="12mm"))
                writer.append(io.BytesIO(pdf), outline_item=page.title().split(" — ")[0])
                print(f"  {doc}: {page.title()}", flush=True)
            b.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        writer.write(f)
    return len(writer.pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default=str(ROOT / "_build" / "html"), help="the built HTML site")
    parser.add_argument("--out", default=str(ROOT / "_build" / "pdf" / "dyncore-book.pdf"))
    args = parser.parse_args(argv)
    site = pathlib.Path(args.site)
    if not (site / "index.html").exists():
        print(f"no site in {site}: run `jupyter-book build .` first", file=sys.stderr)
        return 1
    browser = find_browser()
    if browser is None:
        print("no Chromium found: apt-get install chromium", file=sys.stderr)
        return 1
    n = build_pdf(site, pathlib.Path(args.out), browser)
    print(f"{args.out}: {n} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
