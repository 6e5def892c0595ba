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


def test_binds_loopback(demo_url, robust):
    robust("security", "demo bind address by default", "127.0.0.1 only", demo_url)
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


def test_non_image_upload_is_a_clear_message(demo_url, tmp_path, robust):
    from gradio_client import Client, handle_file
    (tmp_path / "notes.jpg").write_text("this is not an image")
    c = Client(demo_url, verbose=False)
    with pytest.raises(Exception) as e:
        c.predict(handle_file(str(tmp_path / "notes.jpg")), api_name="/classify")
    robust("bad requests", "demo: upload a text file named .jpg", "a clear message in the UI, server keeps running",
           str(e.value))
    assert "Could not read that image" in str(e.value)
    assert len(c.predict("a red star", 2, api_name="/search")[0]) == 2  # still serving


def test_image_upload_gets_labels_from_both_models(demo_url, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    s, t, stats, _ = Client(demo_url, verbose=False).predict(handle_file(str(tmp_path / "red.png")),
                                                              api_name="/classify")
    assert len(s["confidences"]) == 5 and len(t["confidences"]) == 5 and "student" in stats


def test_oversized_upload_is_refused(demo_url, tmp_path, robust):
    import httpx
    from apps.demo.app import MAX_UPLOAD
    big = b"\xff" * (int(MAX_UPLOAD.rstrip("mb")) * 1024 * 1024 + 1024)
    r = httpx.post(f"{demo_url.rstrip('/')}/gradio_api/upload", files={"files": ("big.jpg", big)}, timeout=60)
    robust("bad requests", f"demo: upload larger than the limit ({MAX_UPLOAD})", "refused by the server",
           f"HTTP {r.status_code}: {r.text[:120]}")
    assert r.status_code == 413


def test_serves_no_files_outside_its_gallery(demo_url, robust):
    import httpx
    paths = {"/etc/passwd": "/etc/passwd", "<repo>/pyproject.toml": str(ROOT / "pyproject.toml"),
             "../../../../etc/passwd": "../../../../etc/passwd"}
    got = {label: httpx.get(f"{demo_url.rstrip('/')}/gradio_api/file={p}", timeout=30).status_code
           for label, p in paths.items()}
    robust("security", "demo: fetch /etc/passwd and repo files through the file route", "refused (403/404)",
           ", ".join(f"{p} -> {c}" for p, c in got.items()))
    assert all(c in (403, 404) for c in got.values())
