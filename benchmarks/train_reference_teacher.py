"""Train the ShapesWorld reference teacher (a small real-shaped CLIP) with the plain CLIP contrastive loss.

Reproducible: fixed seed, deterministic data stream. Writes the teacher folder (fp16 safetensors + config),
its scores and a card. Usage:
    python benchmarks/train_reference_teacher.py --steps 3000 --out edgeclip/assets/reference_teacher
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgeclip.data.shapes import ShapesWorld
from edgeclip.data.transforms import to_tensor
from edgeclip.evaluate import evaluate_shapes
from edgeclip.models import create_model, get_tokenizer, save_student


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ShapesCLIP-ViT-12L-192", help="edgeclip model config name")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="pairs per step")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=150, help="linear warm-up steps")
    p.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay (not on norms/biases)")
    p.add_argument("--eval-every", type=int, default=500, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--seed", type=int, default=0, help="init and data-order seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="edgeclip/assets/reference_teacher", help="output folder")
    p.add_argument("--card-only", action="store_true", help="only (re)write CARD.md from the saved teacher")
    return p.parse_args(argv)


def write_card(folder: str) -> None:
    """CARD.md: how the teacher was trained and what it scores (full evaluation sets)."""
    from edgeclip.models import load_student, model_config, model_meta
    from edgeclip.models.params import count_params
    model = load_student(folder)
    info = model_meta(model)["reference_teacher"]
    ev = evaluate_shapes(model, get_tokenizer(model))
    c, z, r, a = count_params(model), ev.zero_shot, ev.retrieval, info["args"]
    text = f"""# ShapesWorld reference teacher

An open_clip `CLIP` shaped like a real one (config `{a['model']}`: ViT, {model_config(model)['vision_cfg']['layers']}
layers, width {model_config(model)['vision_cfg']['width']}, head width 32, patch 8 at 32 px; 4-layer text
transformer, open_clip's BPE tokenizer, context 32), trained from scratch on ShapesWorld by
`benchmarks/train_reference_teacher.py` with the CLIP contrastive loss (captions that repeat inside a batch are
all positives). Stored in fp16 safetensors; loads with `edgeclip.load_teacher("reference")` or plain
`open_clip.create_model_and_transforms("local-dir:...")`.

| | |
|---|---|
| parameters | vision {c.vision:,} · text {c.text:,} (excl. token embedding) · token embedding {c.token_embedding:,} |
| training | {a['steps']} steps x batch {a['batch_size']} = {a['steps'] * a['batch_size']:,} pairs, AdamW lr {a['lr']}, warm-up {a['warmup']}, cosine, wd {a['wd']}, seed {a['seed']} |
| wall time | {info['wall_minutes']:.0f} min on 2 CPU cores ({info['torch_threads']} torch threads; the machine was shared with development work) |

Scores (4,096 zero-shot images over 64 colour-shape classes, 16 held out of training; 1,000 retrieval pairs,
a hit when the retrieved caption equals the query's):

| zero-shot top-1 all | seen | held-out | top-5 all | i2t R@1 | i2t R@5 | t2i R@1 | t2i R@5 |
|---:|---:|---:|---:|---:|---:|---:|---:|
| {z['top1']:.1f} | {z['seen_top1']:.1f} | {z['held_out_top1']:.1f} | {z['top5']:.1f} | {r['i2t_R@1']:.1f} | {r['i2t_R@5']:.1f} | {r['t2i_R@1']:.1f} | {r['t2i_R@5']:.1f} |

Training curve (evaluated every {a['eval_every']} steps): {', '.join(f"step {h['step']}: seen {h['zero_shot']['seen_top1']:.1f} / held-out {h['zero_shot']['held_out_top1']:.1f}" for h in info['history'])}.
"""
    (Path(folder) / "CARD.md").write_text(text)
    print(text)


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * t))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.card_only:
        return write_card(args.out)
    model = create_model(args.model, seed=args.seed).train()
    tok = get_tokenizer(model)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "logit" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    data = ShapesWorld("train", model.visual.image_size[0])
    offset = args.seed * 10_000_000
    history, t0 = [], time.time()
    bar = tqdm(range(args.steps), desc="teacher", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        imgs, caps, _ = data.batch(offset + step * args.batch_size, args.batch_size)
        img_f, txt_f, scale = model(to_tensor(imgs), tok(caps))
        logits = scale * img_f @ txt_f.T
        # captions can repeat inside a batch: identical captions are all positives (soft targets)
        same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if (args.eval_every and (step + 1) % args.eval_every == 0) or step + 1 == args.steps:
            model.eval()
            ev = evaluate_shapes(model, tok)
            model.train()
            rec = {"step": step + 1, "loss": loss.item(), "minutes": (time.time() - t0) / 60,
                   "zero_shot": ev.zero_shot, "retrieval": ev.retrieval}
            history.append(rec)
            tqdm.write(json.dumps({"step": step + 1, "seen": round(ev.zero_shot["seen_top1"], 1),
                                   "held_out": round(ev.zero_shot["held_out_top1"], 1),
                                   "i2t_R@1": round(ev.retrieval["i2t_R@1"], 1), "min": round(rec["minutes"], 1)}))
    model.eval()
    train_info = {"args": vars(args), "history": history, "wall_minutes": (time.time() - t0) / 60,
                  "torch_threads": args.threads}
    out = save_student(model, args.out, fp16=True, extra={"reference_teacher": train_info}, overwrite=True)
    (Path(args.out) / "scores.json").write_text(json.dumps(history[-1], indent=2) + "\n")
    write_card(args.out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
