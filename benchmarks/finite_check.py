"""Cost of refusing non-finite weights on load: the check alone and load_teacher with / without it.

CPU time (min of 5 runs, 1 thread), so that a shared machine's load does not blur it. Usage:
    python benchmarks/finite_check.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import edgeclip.models.weights as ck
from edgeclip.models import REFERENCE_TEACHER, create_model, load_teacher


def cpu_ms(f, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best * 1e3


def main() -> None:
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    vit = tmp / "vit-b-32.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("ViT-B-32", seed=0).state_dict().items()}, str(vit))
    cases = [("reference teacher", REFERENCE_TEACHER / "model.safetensors", lambda: load_teacher("reference")),
             ("ViT-B-32", vit, lambda: load_teacher("ViT-B-32", pretrained=str(vit)))]
    real = ck.check_finite
    for name, path, load in cases:
        sd = load_file(str(path))
        n = sum(v.numel() for v in sd.values())
        dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in sd.values()})
        naive = cpu_ms(lambda: [bool(torch.isfinite(v).all()) for v in sd.values() if v.is_floating_point()])
        check = cpu_ms(lambda: real(sd, "x"))
        ck.check_finite = lambda *a, **k: None
        without = cpu_ms(load)
        ck.check_finite = real
        with_check = cpu_ms(load)
        print(f"{name} ({n / 1e6:.1f}M params, {'/'.join(dtypes)}): check_finite {check:.0f} ms "
              f"(isfinite().all() would be {naive:.0f} ms); load_teacher {without:.0f} ms without the check, "
              f"{with_check:.0f} ms with it")


if __name__ == "__main__":
    main()
