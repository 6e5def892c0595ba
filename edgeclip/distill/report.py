"""What a compress run reports: ``report.md`` and its PNG plots from the report dict, and the ShapesWorld scores
that go into it."""
from __future__ import annotations

from pathlib import Path

from ..models import get_tokenizer
from .losses import format_loss


def shapes_eval_fn(n_zeroshot: int = 2048, n_retrieval: int = 1000):
    """``model -> {metric: %}`` on ShapesWorld's held-out zero-shot and retrieval sets (teacher and student alike)."""
    from ..evaluate import evaluate_shapes

    def fn(model) -> dict:
        r = evaluate_shapes(model, get_tokenizer(model), n_zeroshot=n_zeroshot, n_retrieval=n_retrieval)
        return {**{k: round(v, 2) for k, v in r.zero_shot.items() if k.endswith("top1")},
                "i2t_R@1": round(r.retrieval["i2t_R@1"], 2), "t2i_R@1": round(r.retrieval["t2i_R@1"], 2)}
    return fn


def report_markdown(r: dict) -> str:
    """``report.md``: the plan, parameters, each stage's losses and speed, and teacher vs student scores."""
    tp, sp = r["teacher"]["params"], r["student"]["params"]
    lines = ["# edgeclip compress report", "",
             f"- method: {r['method']}, data: {r['data']}, wall time: {r['wall_s'] / 60:.1f} min",
             f"- plan: {' -> '.join(r['plan'])}" if len(r["plan"]) > 1 else f"- plan: {r['plan'][0]}"]
    if r.get("recipe"):  # reports of earlier versions have none
        lines.append(f"- recipe: loss {format_loss(r['recipe']['loss'])}, {r['recipe']['views']} view(s) per sample")
    lines += ["",
              "| | vision | text (excl. tok. emb.) | token emb. | total |", "|---|---:|---:|---:|---:|",
              f"| teacher | {tp['vision']:,} | {tp['text']:,} | {tp['token_embedding']:,} | {tp['total']:,} |",
              f"| student | {sp['vision']:,} | {sp['text']:,} | {sp['token_embedding']:,} | {sp['total']:,} |",
              f"| ratio | {sp['vision'] / tp['vision']:.1%} | {sp['text'] / tp['text']:.1%} | | "
              f"{sp['total'] / tp['total']:.1%} |", ""]
    for s in r["stages"]:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in s.get("terms_final", {}).items())
        lines.append(f"- stage {s['stage']}: final loss {s['final_loss']:.4f} ({terms}), {s['wall_s'] / 60:.1f} min, "
                     f"{s['samples_per_s']:.0f} samples/s")
    if r.get("teacher_cache"):
        lines.append(f"- teacher cache: {r['teacher_cache']['hits']} hits, {r['teacher_cache']['misses']} misses")
    if r.get("skipped_items"):
        lines.append(f"- skipped items: {r['skipped_items']}")
    if "eval" in r:
        t, s = r["eval"]["teacher"], r["eval"]["student"]
        keys = [k for k in t if k in s]
        lines += ["", "| metric | teacher | student | retained |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {t[k]:.2f} | {s[k]:.2f} | {s[k] / t[k]:.1%} |" if t[k] else f"| {k} | {t[k]:.2f} | "
                  f"{s[k]:.2f} | |" for k in keys]
    ck = r.get("ckpt")
    if ck:
        lines += ["", f"- checkpoints: `ckpt/` ({ck['bytes'] / 1e6:.0f} MB) "
                  + ("kept for `--resume`; delete it, or pass `--drop-ckpt` (`keep_ckpt=False`) next time"
                     if ck["kept"] else "deleted after the successful run (`--drop-ckpt`)")]
    plots = r.get("plots") or {}
    if plots.get("skipped"):
        lines += ["", f"- plots: {plots['skipped']}"]
    lines += [f"\n![{name}]({file})" for name, file in plots.items() if name != "skipped"]
    return "\n".join(lines) + "\n"


def write_plots(r: dict, out: Path) -> dict:
    """PNG plots beside ``report.md``: loss and each loss term per stage, teacher vs student metrics. ``{name: file}`` written, or
    ``{"skipped": why}`` when matplotlib is not installed (it is optional: ``pip install matplotlib``)."""
    try:  # a bare Figure renders PNG with Agg and leaves pyplot's global backend (a notebook's) alone
        from matplotlib.figure import Figure
    except ImportError:
        return {"skipped": "not drawn: matplotlib is not installed (pip install matplotlib)"}
    plots = {"loss curve": "loss.png"}
    fig = Figure(figsize=(11, 3.5))
    ax, ax_terms = fig.subplots(1, 2)
    offset = 0
    for s in r["stages"]:
        steps = s.get("loss_steps") or list(range(1, len(s["loss_curve"]) + 1))
        xs = [offset + x for x in steps]
        ax.plot(xs, s["loss_curve"], label=f"stage {s['stage']}")
        for i, (name, curve) in enumerate(s.get("term_curves", {}).items()):  # same steps as the loss curve
            ax_terms.plot(xs[:len(curve)], curve, c=f"C{i}", label=name if s["stage"] == 1 else None)
        offset += steps[-1] if steps else 0
    ax.set(xlabel="step (all stages)", ylabel="weighted sum", title="distillation loss")
    ax.legend()
    ax_terms.set(xlabel="step (all stages)", ylabel="unweighted", yscale="log", title="each loss term")
    if ax_terms.get_legend_handles_labels()[0]:
        ax_terms.legend()
    _save_fig(fig, out / plots["loss curve"])
    if "eval" in r:
        t, st = r["eval"]["teacher"], r["eval"]["student"]
        keys = [k for k in t if k in st]
        fig = Figure(figsize=(max(5, 1.2 * len(keys)), 3.5))
        ax = fig.subplots()
        x = range(len(keys))
        ax.bar([i - 0.2 for i in x], [t[k] for k in keys], 0.4, label="teacher")
        ax.bar([i + 0.2 for i in x], [st[k] for k in keys], 0.4, label="student")
        ax.set_xticks(list(x), keys, rotation=20)
        ax.set(ylabel="%", title="teacher vs student")
        ax.legend()
        plots["teacher vs student"] = "metrics.png"
        _save_fig(fig, out / plots["teacher vs student"])
    return plots


def _save_fig(fig, path: Path) -> None:
    from ..outputs import atomic_path
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
