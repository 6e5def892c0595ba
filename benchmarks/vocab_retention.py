"""A pruned vocabulary against CLIP's full one, at equal steps (issue #36): the quickstart's student (reference
teacher -> 25% of its vision parameters on ShapesWorld), once with the 49,408-token vocabulary and once pruned to
the merges its world's captions fire, in one process, same seed. Reports zero-shot seen / held-out, retrieval, and
what the text encoder ships (fp32 ONNX and its external data), and writes results/vocab_retention.{json,png}.

    python benchmarks/vocab_retention.py --steps 800
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import plot_path, write


def corpus(path: Path, n: int = 20_000) -> int:
    """Every caption kind ShapesWorld writes (train captions, and the zero-shot prompts of all 64 classes, held-out
    ones included) as one text per line."""
    from edgeclip.data.shapes import CLASSES, ShapesWorld
    texts = set(ShapesWorld("train").batch(0, n)[1]) | {f"a photo of a {' '.join(c)}" for c in CLASSES}
    path.write_text("\n".join(sorted(texts)) + "\n")
    return len(texts)


def text_mb(student: Path, work: Path) -> float:
    from edgeclip.export import export_onnx
    from edgeclip.models import load_student
    art = export_onnx(load_student(student), work).out
    return sum(p.stat().st_size for p in art.glob("text_encoder.onnx*")) / 1e6


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=800, help="optimizer steps of each arm (the quickstart's 800)")
    p.add_argument("--target", default="25%", help="vision budget (the quickstart's 25%%)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    from edgeclip.distill import compress
    rows = []
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        n_texts = corpus(td / "corpus.txt")
        for arm, kw in (("full vocabulary", {}), ("corpus vocabulary", {"vocab_corpus": str(td / "corpus.txt")})):
            res = compress("reference", a.target, data="shapes:12800", steps=a.steps, seed=a.seed, out=td / arm, **kw)
            ev = res.report["eval"]
            rows.append({"arm": arm, "tokens": res.report["vocab"]["tokens"],
                         "text_params": sum(q.numel() for n, q in res.student.named_parameters()
                                            if not n.startswith("visual.")),
                         "text_onnx_mb": text_mb(res.out / "student", td / f"{arm}-onnx"),
                         "student": ev["student"], "teacher": ev["teacher"]})
            print(arm, rows[-1]["tokens"], rows[-1]["text_onnx_mb"], ev["student"], flush=True)
    full, pruned = rows
    delta = {k: round(pruned["student"][k] - full["student"][k], 2) for k in ("seen_top1", "held_out_top1",
                                                                             "i2t_R@1", "t2i_R@1")}
    write("vocab_retention", {"steps": a.steps, "target": a.target, "seed": a.seed, "corpus_texts": n_texts,
                              "rows": rows, "pruned_minus_full_pt": delta, "shared_machine": True})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    keys = ["seen_top1", "held_out_top1"]
    for i, r in enumerate(rows):
        ax[0].bar([k + i * 0.4 for k in range(2)], [r["student"][k] for k in keys], 0.4, label=r["arm"])
    ax[0].set_xticks([0.2, 1.2], ["seen", "held-out"])
    ax[0].set_ylabel("zero-shot top-1 %")
    ax[0].legend(fontsize=8)
    ax[1].bar([r["arm"] for r in rows], [r["text_onnx_mb"] for r in rows])
    ax[1].set_ylabel("text encoder, fp32 ONNX (MB)")
    fig.suptitle(f"quickstart student, {a.steps} steps each: full vs corpus vocabulary", fontsize=9)
    fig.tight_layout()
    fig.savefig(plot_path("vocab_retention"), dpi=100)


if __name__ == "__main__":
    main()
