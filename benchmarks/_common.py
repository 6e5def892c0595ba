"""Shared helpers for the benchmark scripts: results folder, JSON + PNG writing, timing."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import os

# the smoke tests point this elsewhere so they never overwrite the published results
RESULTS = Path(os.environ.get("EDGECLIP_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def machine() -> dict:
    import torch
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    print(f"wrote {p}")
    return p


def plot_path(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def timeit(fn, repeat: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    import statistics
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)
