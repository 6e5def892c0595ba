"""Demo under load: concurrent gradio_client users against ``edgeclip demo`` on 127.0.0.1, then oversized uploads.

    python benchmarks/demo_load.py --artifact runs/quickstart/artifact --teacher reference --clients 20 --queries 5

The server is ``python -m edgeclip.cli demo`` in a subprocess (the edgeclip that PYTHONPATH selects, so an older
checkout can be measured the same way), bound to loopback on a free port and stopped at the end. Each client sends
text queries and downloads every gallery image it gets back, as a browser does. Reports per-request latency
percentiles, failed requests (with their error types), the server's RSS before / after / peak, the server-log lines
that mention h11 or Content-Length, and what ``--big-png`` concurrent uploads of a 1-bit 13,000 x 13,000 PNG
(~20 KB on disk, 169 M pixels decoded) cost.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

QUERIES = ["a red star", "a large blue circle", "a small green square on the left", "a yellow triangle",
           "two purple shapes", "a cyan circle at the top", "an orange star on the right", "a big white square"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss" if key == "VmRSS" else "peak"] = round(int(val.split()[0]) / 1024, 1)
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (load-independent, unlike latency on a shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(a, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgeclip.cli", "demo", "--artifact", a.artifact, "--teacher", a.teacher,
           "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the demo server exited with {proc.returncode} before answering")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the demo server did not answer within {timeout:.0f} s")


def _user(url: str, n: int, k: int, seed: int, downloads: str) -> list[tuple[bool, float, str]]:
    """One client: ``n`` searches, each counted from request to the last gallery image downloaded."""
    from gradio_client import Client
    c = Client(url, verbose=False, download_files=downloads, analytics_enabled=False)
    got = []
    for i in range(n):
        t0 = time.perf_counter()
        try:
            s_gal, t_gal, _ = c.predict(QUERIES[(seed + i) % len(QUERIES)], k, api_name="/search")
            ok = len(s_gal) == k and len(t_gal) == k and all(Path(x["image"]).is_file() for x in s_gal + t_gal)
            got.append((ok, time.perf_counter() - t0, "" if ok else "incomplete gallery"))
        except Exception as e:  # every failure is counted and named, not raised
            got.append((False, time.perf_counter() - t0, type(e).__name__))
    return got


def load(url: str, clients: int, queries: int, k: int) -> dict:
    with tempfile.TemporaryDirectory() as dl, ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        runs = list(pool.map(lambda i: _user(url, queries, k, i, dl), range(clients)))
        wall = time.perf_counter() - t0
    res = [r for rs in runs for r in rs]
    lat = sorted(t for _, t, _ in res)
    errors: dict[str, int] = {}
    for ok, _, err in res:
        if not ok:
            errors[err] = errors.get(err, 0) + 1
    return {"requests": len(res), "failed": sum(errors.values()), "errors": errors, "wall_s": round(wall, 2),
            "p50_s": round(statistics.median(lat), 3), "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3)}


def big_uploads(url: str, n: int, side: int, work: Path) -> dict:
    """``n`` concurrent /classify calls with a 1-bit side x side PNG: time, and what each caller got back."""
    from gradio_client import Client, handle_file
    from PIL import Image
    png = work / "big.png"
    Image.new("1", (side, side)).save(png, optimize=True)

    def one(_):
        t0 = time.perf_counter()
        try:
            Client(url, verbose=False, download_files=False, analytics_enabled=False).predict(
                handle_file(str(png)), api_name="/classify")
            out = "accepted (decoded and classified)"
        except Exception as e:
            out = " ".join(str(e).split())[:200] or type(e).__name__
        return time.perf_counter() - t0, out

    with ThreadPoolExecutor(n) as pool:
        res = list(pool.map(one, range(n)))
    return {"uploads": n, "png_bytes": png.stat().st_size, "pixels": side * side,
            "max_s": round(max(t for t, _ in res), 2), "answers": sorted({o for _, o in res})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="exported artifact folder for 'edgeclip demo --artifact'")
    p.add_argument("--teacher", default="reference", help="teacher spec for 'edgeclip demo --teacher'")
    p.add_argument("--clients", type=int, default=20, help="concurrent gradio_client users")
    p.add_argument("--queries", type=int, default=5, help="text queries per user")
    p.add_argument("--k", type=int, default=6, help="gallery images per model and query")
    p.add_argument("--big-png", type=int, default=3, help="concurrent uploads of the 1-bit PNG (0: skip)")
    p.add_argument("--big-side", type=int, default=13_000, help="width and height of that PNG")
    p.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for the server")
    p.add_argument("--name", default="demo_load", help="results file stem (benchmarks/results/NAME.json)")
    a = p.parse_args(argv)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as work:
        log = Path(work) / "server.log"
        proc = start_server(a, port, log)
        try:
            wait_up(url, proc, a.startup_timeout)
            rss = {"start": rss_mb(proc.pid)}
            cpu0, own0 = cpu_s(proc.pid), time.process_time()
            res = {"load": load(url, a.clients, a.queries, a.k)}
            n = res["load"]["requests"]
            res["load"]["server_cpu_ms_per_request"] = round((cpu_s(proc.pid) - cpu0) / n * 1e3, 1)
            res["load"]["client_cpu_ms_per_request"] = round((time.process_time() - own0) / n * 1e3, 1)
            rss["after_load"] = rss_mb(proc.pid)
            if a.big_png:
                res["big_png"] = big_uploads(url, a.big_png, a.big_side, Path(work))
                time.sleep(1)  # let the last handler return its buffers before reading RSS
                rss["after_big_png"] = rss_mb(proc.pid)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server_log = log.read_text(errors="replace").splitlines()
    bad = [ln for ln in server_log if "h11" in ln or "Content-Length" in ln or "LocalProtocolError" in ln]
    data = {"args": vars(a), **res, "rss_mb": rss, "server_alive_at_end": alive,
            "server_protocol_error_lines": len(bad), "server_protocol_error_sample": bad[:3]}
    write(a.name, data)
    print(f"{res['load']['requests']} requests, {res['load']['failed']} failed {res['load']['errors']}; "
          f"p50 {res['load']['p50_s']} s, p95 {res['load']['p95_s']} s; server CPU "
          f"{res['load']['server_cpu_ms_per_request']} ms/request; RSS MB {rss}; "
          f"server protocol-error lines {len(bad)}" + (f"; big PNG {res['big_png']}" if a.big_png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
