"""Parity's share of an export: PyTorch references computed once per export (today) against once per variant
(before, re-enacted by a ``References`` that never remembers), same model, variants and photos, arms alternated.

Usage:
    python benchmarks/parity_cost.py                      # random ViT-B-32 at 224 px, the --int8 variants, 1 round
    python benchmarks/parity_cost.py --model reference --rounds 2
Writes benchmarks/results/parity_cost.{json,png}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import plot_path, write  # noqa: E402

VARIANTS = ["fp32", "int8-dynamic", "int8-dynamic-full", "int8-static"]  # what `edgeclip export --int8 --calib` builds


def run(model, arm: str, images, calib) -> dict:
    import edgeclip.export as ex
    from edgeclip.artifact import read_manifest
    from edgeclip.export import export_artifact
    from edgeclip.export.parity import References

    class Forgetful(References):  # the behaviour before: every variant re-read its images and recomputed
        def images(self, *args):
            self._images.clear()
            return super().images(*args)

        def pixels(self, *args):
            self._pixels.clear()
            return super().pixels(*args)

        def _digest(self, a):  # nothing was hashed before: the references were simply recomputed
            return id(a), a.shape

        def embed(self, pixels, ids):
            self._embeds.clear()
            return super().embed(pixels, ids)
    ex.References = Forgetful if arm == "per variant" else References
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = export_artifact(model, Path(tmp) / "a", VARIANTS, images_dir=images, calib_dir=calib)
            total = time.perf_counter() - t0
            t = read_manifest(Path(tmp) / "a").timings
    finally:
        ex.References = References
    return {"arm": arm, "export_s": round(total, 1), "parity_s": t["parity_s"], "references_s": t["references_s"],
            "parity_share": round(t["parity_s"] / total, 3), "passed": res.passed}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32", help="open_clip name (random init) or 'reference'")
    p.add_argument("--rounds", type=int, default=1, help="alternated rounds (A B, then B A, ...)")
    p.add_argument("--images", default=str(Path(__file__).resolve().parents[2] / "shared/data/imagenet-sample-200"))
    a = p.parse_args(argv)
    from edgeclip.models import create_model, load_teacher
    model = load_teacher("reference") if a.model == "reference" else create_model(a.model, seed=0)
    images = a.images if Path(a.images).is_dir() else None
    rows = []
    for r in range(a.rounds):
        arms = ["per variant", "once"] if r % 2 == 0 else ["once", "per variant"]
        for arm in arms:
            rows.append({"round": r, **run(model, arm, images, images)})
            print(rows[-1], flush=True)
    med = {arm: sorted(x["parity_s"] for x in rows if x["arm"] == arm)[len([x for x in rows if x["arm"] == arm]) // 2]
           for arm in ("per variant", "once")}
    summary = {"model": a.model, "variants": VARIANTS, "photos": images is not None, "rows": rows,
               "median_parity_s": med, "ratio_once_over_per_variant": round(med["once"] / med["per variant"], 3)}
    write("parity_cost", summary)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, arm in enumerate(("per variant", "once")):
        mine = [x for x in rows if x["arm"] == arm]
        ax.barh(i, sum(x["export_s"] for x in mine) / len(mine), color="#ccc", label="export" if i == 0 else None)
        ax.barh(i, med[arm], color="#c44" if i == 0 else "#4a4", label=f"parity ({arm})")
    ax.set_yticks([0, 1], ["references per variant\n(before)", "references once\n(now)"])
    ax.set_xlabel("seconds")
    ax.set_title(f"{a.model}: parity of {len(VARIANTS)} variants, {summary['ratio_once_over_per_variant']:.2f}x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path("parity_cost"), dpi=120)
    print(f"parity once / per variant: {summary['ratio_once_over_per_variant']:.2f}")


if __name__ == "__main__":
    main()
