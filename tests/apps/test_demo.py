"""The Gradio demo: launched with its default bind address, answers gradio_client queries from both models, serves
gallery images made once, refuses oversized or undecodable uploads in one message, and works in a real headless
browser (Debian chromium driven by playwright)."""
import inspect
import shutil
import socket
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
from edgeclip.apps.demo.app import MAX_UPLOAD, Models, launch, open_upload, serve, shapes_gallery  # noqa: E402
from edgeclip.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHOT = ROOT / "tests" / "artifacts" / "demo.png"


@pytest.fixture(scope="module")
def models(tiny_demo):
    teacher, artifact = tiny_demo
    return Models(artifact, str(teacher), shapes_gallery(24))


@pytest.fixture(scope="module")
def demo_url(models):
    demo = launch(models, port=None, block=False)  # host left to its default
    yield demo.local_url
    demo.close()


def _outward_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


@pytest.mark.slow
def test_binds_loopback_by_default(demo_url, robust):
    from edgeclip.cli import parse_args
    defaults = {"edgeclip demo --host": parse_args(["demo"]).host,
                "serve(host=)": inspect.signature(serve).parameters["host"].default,
                "launch(host=)": inspect.signature(launch).parameters["host"].default}
    port = int(demo_url.rstrip("/").rsplit(":", 1)[1])
    ip = _outward_ip()
    reachable = None
    if ip:  # the server launched with the default must not answer on the machine's other address
        with socket.socket() as s:
            s.settimeout(2)
            reachable = s.connect_ex((ip, port)) == 0
    robust("security", "demo bind address by default", "127.0.0.1 only; not reachable on the machine's own address",
           f"defaults {defaults}; served at {demo_url}; connect to {ip or 'no other address'}:{port} "
           f"{'accepted' if reachable else 'refused' if reachable is False else 'not tried'}")
    assert set(defaults.values()) == {"127.0.0.1"}
    assert demo_url.startswith("http://127.0.0.1:") and not reachable


@pytest.mark.slow
def test_gradio_client_gets_results_from_both_models(demo_url):
    from gradio_client import Client
    c = Client(demo_url, verbose=False)
    s_gal, t_gal, stats = c.predict("a red star", 4, api_name="/search")
    assert len(s_gal) == 4 and len(t_gal) == 4
    assert "student" in stats and "teacher" in stats and "overlap" in stats


@pytest.mark.slow
def test_gallery_images_are_files_made_once(demo_url, models):
    """Every answer points at the thumbnails written at startup: nothing is re-encoded while others download it."""
    from gradio_client import Client
    c = Client(demo_url, verbose=False, download_files=False)
    made = {p: Path(p).stat().st_mtime_ns for p in models.thumbs}
    answers = [c.predict("a red star", 6, api_name="/search")[:2] for _ in range(2)]
    paths = [[x["image"]["path"] for x in gal] for a in answers for gal in a]
    assert paths[0] == paths[2] and paths[1] == paths[3]  # the same files for the same query, twice
    assert {p for ps in paths for p in ps} <= set(made)
    assert {p: Path(p).stat().st_mtime_ns for p in models.thumbs} == made  # never rewritten


@pytest.mark.slow
def test_student_line_names_the_variant(models):
    assert f"variant **{models.rt.variant}**" in models.student_info()
    assert f"runs on **{models.rt.backend}**" in models.student_info()


@pytest.mark.slow
def test_empty_query_is_a_clear_message(demo_url):
    from gradio_client import Client
    c = Client(demo_url, verbose=False)
    with pytest.raises(Exception, match="Type a query"):
        c.predict("   ", 4, api_name="/search")


@pytest.mark.slow
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


@pytest.mark.slow
def test_non_image_upload_is_a_clear_message(demo_url, tmp_path, robust):
    from gradio_client import Client, handle_file
    (tmp_path / "notes.jpg").write_text("this is not an image")
    c = Client(demo_url, verbose=False)
    with pytest.raises(Exception) as e:
        c.predict(handle_file(str(tmp_path / "notes.jpg")), api_name="/classify")
    alive = len(c.predict("a red star", 2, api_name="/search")[0])
    robust("bad requests", "demo: upload a text file named .jpg", "a clear message in the UI, server keeps running",
           f"{e.value}; a search afterwards returned {alive} images")
    assert "Could not read that image" in str(e.value) and alive == 2


@pytest.mark.slow
def test_image_upload_gets_labels_from_both_models(demo_url, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    s, t, stats, shown = Client(demo_url, verbose=False).predict(handle_file(str(tmp_path / "red.png")),
                                                                  api_name="/classify")
    assert len(s["confidences"]) == 5 and len(t["confidences"]) == 5 and "student" in stats
    assert Image.open(shown).size == (160, 160)  # the preview, served from the demo's own files


@pytest.mark.slow
def test_oversized_upload_is_refused(demo_url, robust):
    import httpx
    big = b"\xff" * (int(MAX_UPLOAD.rstrip("mb")) * 1024 * 1024 + 1024)
    r = httpx.post(f"{demo_url.rstrip('/')}/gradio_api/upload", files={"files": ("big.jpg", big)}, timeout=60)
    robust("bad requests", f"demo: upload larger than the limit ({MAX_UPLOAD})", "refused by the server",
           f"HTTP {r.status_code}: {r.text[:120]}")
    assert r.status_code == 413


@pytest.mark.slow
def test_serves_no_files_outside_its_gallery(demo_url, robust):
    import httpx
    paths = {"/etc/passwd": "/etc/passwd", "<repo>/pyproject.toml": str(ROOT / "pyproject.toml"),
             "../../../../etc/passwd": "../../../../etc/passwd"}
    got = {label: httpx.get(f"{demo_url.rstrip('/')}/gradio_api/file={p}", timeout=30).status_code
           for label, p in paths.items()}
    robust("security", "demo: fetch /etc/passwd and repo files through the file route", "refused (403/404)",
           ", ".join(f"{p} -> {c}" for p, c in got.items()))
    assert all(c in (403, 404) for c in got.values())


# --- uploads are sized from the header before any pixel is decoded -------------------------------------------
def test_big_png_is_refused_from_its_header(tmp_path, robust):
    """The issue's case: a 20 KB 1-bit 13,000 x 13,000 PNG (169 M pixels) took 10 s and +1.6 GB to decode."""
    from PIL import Image
    Image.new("1", (13_000, 13_000)).save(tmp_path / "big.png", optimize=True)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        open_upload(tmp_path / "big.png")
    ms = (time.perf_counter() - t0) * 1e3
    robust("bad requests", "demo: a 1-bit 13,000 x 13,000 PNG (decompression bomb)",
           "refused from the header in one line, nothing decoded", f"{e.value} ({ms:.0f} ms)")
    assert "169 M" in str(e.value) and "\n" not in str(e.value) and ms < 500
    import edgeclip.data.pairs  # noqa: F401  lowers PIL's global bomb limit: then PIL refuses first, same message
    with pytest.raises(ConfigError, match="169 M pixels"):
        open_upload(tmp_path / "big.png")


def test_big_jpeg_is_decoded_at_reduced_scale(tmp_path):
    from PIL import Image
    Image.new("RGB", (800, 600), (10, 200, 30)).save(tmp_path / "big.jpg")
    img = open_upload(tmp_path / "big.jpg", max_pixels=60_000)  # 480,000 pixels: draft-decoded at 1/4 scale
    assert img.mode == "RGB" and img.size == (200, 150)
    assert open_upload(tmp_path / "big.jpg").size == (800, 600)  # under the default limit: full size


def test_png_over_the_limit_is_refused_and_under_it_decoded(tmp_path):
    from PIL import Image
    Image.new("L", (300, 200)).save(tmp_path / "grey.png")
    with pytest.raises(ConfigError, match="300 x 200"):
        open_upload(tmp_path / "grey.png", max_pixels=50_000)
    assert open_upload(tmp_path / "grey.png", max_pixels=60_000).mode == "RGB"


def test_sixteen_bit_png_is_decoded_like_the_training_loader(tmp_path):
    import numpy as np
    from PIL import Image

    from edgeclip.data.pairs import open_image
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(tmp_path / "deep.png")
    got = np.asarray(open_upload(tmp_path / "deep.png"))
    assert got.std() > 10 and np.array_equal(got, np.asarray(open_image(tmp_path / "deep.png")))  # not all white
