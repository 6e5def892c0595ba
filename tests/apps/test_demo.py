"""The Gradio demo: launches on 127.0.0.1, answers gradio_client queries from both models, and works in a real
headless browser (Debian chromium driven by playwright)."""
import shutil
import sys
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHOT = ROOT / "tests" / "artifacts" / "demo.png"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from apps.demo.app import Models, launch, shapes_gallery
    from edgeclip.export import export_onnx
    from edgeclip.models import create_model, save_student
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import TINY_CFG
    d = tmp_path_factory.mktemp("demo")
    teacher = create_model(TINY_CFG, seed=0)
    save_student(teacher, d / "teacher")
    export_onnx(create_model(TINY_CFG, seed=1), d / "artifact")
    models = Models(d / "artifact", str(d / "teacher"), shapes_gallery(24))
    demo = launch(models, "127.0.0.1", None, block=False)
    yield demo.local_url
    demo.close()


def test_binds_loopback(demo_url):
    assert demo_url.startswith("http://127.0.0.1:")


def test_gradio_client_gets_results_from_both_models(demo_url):
    from gradio_client import Client
    c = Client(demo_url, verbose=False)
    s_gal, t_gal, stats = c.predict("a red star", 4, api_name="/search")
    assert len(s_gal) == 4 and len(t_gal) == 4
    assert "student" in stats and "teacher" in stats and "overlap" in stats


def test_empty_query_is_a_clear_message(demo_url):
    from gradio_client import Client
    c = Client(demo_url, verbose=False)
    with pytest.raises(Exception, match="Type a query"):
        c.predict("   ", 4, api_name="/search")


def test_real_browser_search_fills_both_galleries(demo_url):
    pw = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian chromium not installed (apt-get install chromium; .ci/run does it)")
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(demo_url, wait_until="networkidle")
        page.locator("#query textarea").fill("a large blue circle")
        page.locator("#search").click()
        page.wait_for_function("['#student-gallery', '#teacher-gallery'].every(g => {"
                               "  const im = [...document.querySelectorAll(g + ' img')];"
                               "  return im.length >= 6 && im.every(i => i.complete && i.naturalWidth > 0); })",
                               timeout=30_000)
        assert "overlap" in page.locator("#stats").inner_text()
        SHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True)
        browser.close()
    assert SHOT.stat().st_size > 10_000
