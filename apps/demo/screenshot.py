"""Screenshot of the demo in headless Debian chromium (for the README): launch, query, capture.

    python -m edgeclip.apps.demo.screenshot --artifact runs/quickstart/artifact --out docs/demo.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .app import serve


def capture(url: str, out: Path, query: str) -> None:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("Debian chromium is needed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url, wait_until="networkidle")
        page.locator("#query textarea").fill(query)
        page.locator("#search").click()
        page.wait_for_function("['#student-gallery', '#teacher-gallery'].every(g => {"
                               "const im = [...document.querySelectorAll(g + ' img')];"
                               "return im.length >= 6 && im.every(i => i.complete && i.naturalWidth > 0); })",
                               timeout=30_000)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", default="runs/quickstart/artifact", help="exported student")
    p.add_argument("--teacher", default="reference", help="teacher spec")
    p.add_argument("--query", default="a large red star", help="text query to show")
    p.add_argument("--out", default="docs/demo.png", help="PNG path")
    a = p.parse_args(argv)
    demo = serve(a.artifact, a.teacher, host="127.0.0.1", port=None, block=False)
    try:
        capture(demo.local_url, Path(a.out), a.query)
    finally:
        demo.close()
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
