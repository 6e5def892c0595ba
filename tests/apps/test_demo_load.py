"""The demo under load, bounded: ``edgeclip demo`` on loopback (tiny models), 20 concurrent gradio_client users x 2
text queries downloading every gallery image, then 3 concurrent decompression-bomb uploads; the server stops at the
end. Runs ``benchmarks/demo_load.py`` in a subprocess (benchmarks/ is never imported)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # its module fixture starts the demo server and exports (~35 s)

pytest.importorskip("gradio")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def load_run(tiny_demo, tmp_path_factory):
    teacher, artifact = tiny_demo
    out = tmp_path_factory.mktemp("load")
    env = {**os.environ, "EDGECLIP_BENCH_RESULTS": str(out), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_load.py"), "--artifact", str(artifact),
                        "--teacher", str(teacher), "--clients", "20", "--queries", "2", "--big-png", "3"],
                       env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads((out / "demo_load.json").read_text())


def test_twenty_concurrent_clients_all_get_answers(load_run, robust):
    load, rss = load_run["load"], load_run["rss_mb"]
    robust("demo under load", f"{load['requests']} searches from 20 concurrent gradio_client users (tiny models, "
           "loopback), every gallery image downloaded", "0 failed requests, no protocol errors in the server log",
           f"{load['failed']} failed {load['errors'] or ''}; p50 {load['p50_s']} s, p95 {load['p95_s']} s; "
           f"server RSS {rss['start']['rss']} -> {rss['after_load']['rss']} MB; "
           f"protocol-error log lines: {load_run['server_protocol_error_lines']}")
    assert load["requests"] == 40 and load["failed"] == 0, load
    assert load_run["server_protocol_error_lines"] == 0, load_run["server_protocol_error_sample"]


def test_concurrent_bomb_uploads_are_refused_and_leave_no_memory_behind(load_run, robust):
    big, rss = load_run["big_png"], load_run["rss_mb"]
    grown = rss["after_big_png"]["rss"] - rss["after_load"]["rss"]
    peak = rss["after_big_png"]["peak"] - rss["after_load"]["peak"]
    robust("demo under load", f"{big['uploads']} concurrent uploads of a {big['png_bytes'] / 1e3:.0f} KB 1-bit "
           "13,000 x 13,000 PNG", "each refused with one clear message; RSS stays flat; server keeps serving",
           f"{big['answers']}; slowest answer {big['max_s']} s; RSS +{grown:.0f} MB (peak +{peak:.0f} MB); "
           f"server alive: {load_run['server_alive_at_end']}")
    assert len(big["answers"]) == 1 and big["answers"][0].startswith("That image is") and "169 M" in big["answers"][0]
    assert grown < 100 and peak < 100 and load_run["server_alive_at_end"]
