"""Runtime under abuse: tokenizer time on long unbroken words, BPE-cache memory, 16-bit PNG fidelity, hash cost.

    python benchmarks/runtime_abuse.py --artifact runs/quickstart/artifact [--big-artifact DIR]

Runs against whichever ``edgeclip`` is on PYTHONPATH (so an older checkout can be measured the same way).
Writes ``runtime_abuse.json`` to ``benchmarks/results/`` (or ``$EDGECLIP_BENCH_RESULTS``).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _word(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def tokenizer_cases(vocab: str, timeout: float) -> dict:
    from edgeclip.runtime import Tokenizer
    tok = Tokenizer(vocab, 77)
    out = {}
    for n in (16_000,):
        w = _word(n)
        t = time.perf_counter()
        tok([w])
        out[f"unbroken_{n // 1000}k_chars_ms"] = round((time.perf_counter() - t) * 1e3, 1)
    code = ("import time,random,string,sys; from edgeclip.runtime import Tokenizer; t=Tokenizer(sys.argv[1],77); "
            "r=random.Random(1); w=''.join(r.choice(string.ascii_lowercase) for _ in range(1<<20)); "
            "s=time.perf_counter(); t([w]); print((time.perf_counter()-s)*1e3)")
    try:
        r = subprocess.run([sys.executable, "-c", code, vocab], capture_output=True, text=True, timeout=timeout,
                           cwd="/")  # cwd: "-c" puts the working directory first on sys.path
        out["unbroken_1MB_ms"] = round(float(r.stdout.strip()), 1)
    except subprocess.TimeoutExpired:
        out["unbroken_1MB_ms"] = f"> {timeout * 1e3:.0f} (killed)"
    rng = random.Random(2)
    words = list({"".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(6, 10)))
                  for _ in range(620_000)})[:600_000]
    texts = [" ".join(words[i:i + 8]) for i in range(0, len(words), 8)]
    before = _rss_mb()
    for i in range(0, len(texts), 1000):
        tok(texts[i:i + 1000])
    out["rss_growth_600k_unique_words_mb"] = round(_rss_mb() - before, 1)
    return out


def png16_cosine(artifact: str, photo: Path, tmp: Path) -> dict:
    from PIL import Image

    import edgeclip.runtime as rt
    r = rt.load(artifact)
    grey = np.asarray(Image.open(photo).convert("L"), dtype=np.uint16)
    Image.fromarray(grey.astype(np.uint8), "L").save(tmp / "grey8.png")
    Image.fromarray(grey * 257).save(tmp / "grey16.png")  # uint16 -> mode I;16: the same picture in 16 bits
    assert Image.open(tmp / "grey16.png").mode.startswith("I")
    e = r.embed_images([str(tmp / "grey8.png"), str(tmp / "grey16.png")])
    return {"photo": photo.name, "cosine_16bit_vs_8bit": round(float(e[0] @ e[1]), 4)}


def hash_cost(artifact: str, repeats: int = 3) -> dict:
    import edgeclip.runtime as rt
    from edgeclip.runtime.integrity import check_artifact
    r = rt.load(artifact, verify=False)
    times = {}
    for verify in (False, True):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            files = check_artifact(r.dir, r.manifest, "fp32", verify=verify)
            best = min(best, time.perf_counter() - t)
        times[verify] = best
    mb = sum((r.dir / n).stat().st_size for n in files.verified) / 2**20
    t = time.perf_counter()
    rt.load(artifact, verify=False)
    load_s = time.perf_counter() - t
    cost = (times[True] - times[False]) * 1e3
    return {"verified_mb": round(mb, 1), "verify_ms": round(cost, 1), "ms_per_mb": round(cost / mb, 2),
            "load_without_verify_ms": round(load_s * 1e3, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="an exported artifact folder (16-bit PNG and hash cost)")
    p.add_argument("--big-artifact", help="a second, larger artifact (e.g. ViT-B-32) for the hash cost")
    p.add_argument("--photo", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data" /
                                          "imagenet-sample-200" / "images"), help="a photo or a folder of photos")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before the 1 MB tokenizer case is killed")
    p.add_argument("--skip-hash", action="store_true", help="skip the hash-cost part (for code that has none)")
    a = p.parse_args(argv)
    import tempfile
    photo = Path(a.photo)
    photo = sorted(photo.iterdir())[0] if photo.is_dir() else photo
    res = {"tokenizer": tokenizer_cases(str(Path(a.artifact) / "bpe_simple_vocab_16e6.txt.gz"), a.timeout)}
    print(json.dumps(res), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        res["png16"] = png16_cosine(a.artifact, photo, Path(tmp))
    if not a.skip_hash:
        res["hash"] = {"artifact": hash_cost(a.artifact)}
        if a.big_artifact:
            res["hash"]["big_artifact"] = hash_cost(a.big_artifact)
    out = Path(os.environ.get("EDGECLIP_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_abuse.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
