"""Train the ShapesWorld reference teacher (a small real-shaped CLIP) with the plain CLIP contrastive loss.

Reproducible: fixed seed, deterministic data stream (each step's batch is a pure function of the step). Writes the
teacher folder (fp16 safetensors + config), its scores and a card. Resumable: a checkpoint (model, optimizer, step,
history, arguments) is written atomically to OUT/ckpt/last.pt every --ckpt-minutes, when a run is told to pause
(--stop-at, --max-minutes) and on SIGTERM / Ctrl-C; ``--resume`` continues it exactly (N steps straight and N/2 +
resume + N/2 give the same weights). --steps is the run's total, over all its resumes. The checkpoint goes away
when the finished teacher replaces OUT. Usage (the v2 schedule is the default; repeat the same line with --resume
in each later session, e.g. with --max-minutes 170 to pause cleanly before a 3-hour session ends):
    python benchmarks/train_reference_teacher.py --out runs/teacher_v2 [--resume] [--max-minutes 170]
The v1 teacher (edgeclip/assets/reference_teacher) was trained with
    --steps 2200 --batch-size 128 --lr 7e-4 --warmup 150
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgeclip.data.shapes import ShapesWorld
from edgeclip.data.transforms import to_tensor
from edgeclip.errors import EdgeClipError
from edgeclip.evaluate import evaluate_shapes
from edgeclip.models import create_model, get_tokenizer, save_student

CKPT_FORMAT = "edgeclip-reference-teacher-ckpt/1"
CKPT = Path("ckpt") / "last.pt"
# what a run of this script leaves in OUT: the checkpoint while it trains, the teacher folder once it is done
OWN_ENTRIES = {"ckpt", "open_clip_config.json", "model.safetensors", "scores.json", "CARD.md"}
# arguments that fix the trajectory: a resume must use the checkpoint's (--steps may grow: it is the total)
SAME_ON_RESUME = ("batch_size", "lr", "warmup", "wd", "seed")


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit code 2, nothing written."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ShapesCLIP-ViT-12L-192",
                   help="edgeclip model config name, or a .json file holding an open_clip-style config")
    p.add_argument("--steps", type=int, default=5000, help="optimizer steps in all (the cosine ends there)")
    p.add_argument("--batch-size", type=int, default=256, help="pairs per step")
    p.add_argument("--lr", type=float, default=7e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    p.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay (not on norms/biases)")
    p.add_argument("--eval-every", type=int, default=500, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--eval-images", type=int, default=4096, help="zero-shot evaluation images (the card's too)")
    p.add_argument("--eval-pairs", type=int, default=1000, help="retrieval evaluation pairs (the card's too)")
    p.add_argument("--seed", type=int, default=0, help="init and data-order seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="edgeclip/assets/reference_teacher", help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in OUT/ckpt (starts from step 0 when there is none)")
    p.add_argument("--ckpt-minutes", type=float, default=5.0,
                   help="write the checkpoint every M minutes (0: only when the run pauses or is stopped)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="pause after this step: write the checkpoint and exit 0 (resume later with --resume)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="pause after M minutes of this run: write the checkpoint and exit 0")
    p.add_argument("--card-only", action="store_true", help="only (re)write CARD.md from the saved teacher")
    return p.parse_args(argv)


def write_card(folder: str) -> None:
    """CARD.md: how the teacher was trained and what it scores (full evaluation sets)."""
    from edgeclip.models import load_student, model_config, model_meta
    from edgeclip.models.params import count_params
    model = load_student(folder)
    info = model_meta(model)["reference_teacher"]
    a = info["args"]
    n_zs, n_ret = a.get("eval_images", 4096), a.get("eval_pairs", 1000)
    ev = evaluate_shapes(model, get_tokenizer(model), n_zeroshot=n_zs, n_retrieval=n_ret)
    c, z, r = count_params(model), ev.zero_shot, ev.retrieval
    segments = info.get("segments") or [{"from": 0, "to": a["steps"], "minutes": info["wall_minutes"]}]
    runs = len(segments)
    resumes = "" if runs == 1 else (f" over {runs} runs (resumed from its checkpoint at step"
                                    f"{'s' if runs > 2 else ''} {', '.join(str(s['from']) for s in segments[1:])})")
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
| wall time | {info['wall_minutes']:.0f} min{resumes} on {info.get('cpu_cores', 2)} CPU cores ({info['torch_threads']} torch threads; the machine was shared with development work) |

Scores ({n_zs:,} zero-shot images over 64 colour-shape classes, 16 held out of training; {n_ret:,} retrieval pairs,
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


def plain(obj):
    """``obj`` as JSON types only (dicts, lists, str, int, float, bool, None): what ``weights_only`` loads."""
    return json.loads(json.dumps(obj, default=float))


def resolve_model(spec: str):
    """``--model``: a config name, or a .json file with a config dict."""
    if spec.endswith(".json"):
        try:
            return json.loads(Path(spec).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--model {spec!r}: cannot read the config file ({e})") from None
    return spec


def describe_cfg(cfg: dict) -> str:
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    return (f"vision {v.get('layers')} layers x width {v.get('width')} at {v.get('image_size')} px, "
            f"text {t.get('layers')} layers x width {t.get('width')}, embed {cfg.get('embed_dim')}")


def load_ckpt(path: Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or objects weights_only refuses
        raise UsageError(f"{str(path)!r} cannot be read as a checkpoint of this script "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise UsageError(f"{str(path)!r} is not a checkpoint of this script; choose another --out")
    return ck


def inspect_out(out: Path) -> tuple[dict | None, dict | None]:
    """What OUT holds: (checkpoint, finished-teacher metadata), each None when absent.

    Refuses (UsageError) anything this script did not write there: a file, another kind of edgeclip output, a
    student it did not train, files of the user's. Reads only.
    """
    from edgeclip.outputs import _protected, output_kind
    why = _protected(out)
    if why:
        raise UsageError(f"refusing to train into {str(out)!r}: it is {why}; choose a new output folder")
    if not os.path.lexists(out):
        return None, None
    if not out.is_dir() or out.is_symlink():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder; choose a new or empty output folder")
    kind = output_kind(out)
    if kind not in (None, "student"):
        raise UsageError(f"--out {str(out)!r} is an edgeclip {kind}, not a reference-teacher run of this script; "
                         "choose a new or empty output folder")
    foreign = sorted(e.name for e in out.iterdir() if e.name not in OWN_ENTRIES)
    if foreign:
        raise UsageError(f"--out {str(out)!r} holds {', '.join(map(repr, foreign[:3]))}"
                         f"{', ...' if len(foreign) > 3 else ''}, which this script did not write; "
                         "choose a new or empty output folder")
    meta = None
    if (out / "open_clip_config.json").exists():
        try:
            cfg = json.loads((out / "open_clip_config.json").read_text())
        except (OSError, ValueError):
            cfg = None
        meta = cfg.get("edgeclip", {}).get("reference_teacher") if isinstance(cfg, dict) else None
        if kind != "student" or not isinstance(meta, dict) or "args" not in meta:
            raise UsageError(f"--out {str(out)!r} holds an edgeclip student that this script did not train; "
                             "choose a new or empty output folder")
        meta = {**meta, "model_cfg": cfg.get("model_cfg")}
    ck_dir = out / "ckpt"
    if ck_dir.exists():
        if not ck_dir.is_dir():
            raise UsageError(f"{str(ck_dir)!r} is not a folder this script wrote; choose a new or empty output folder")
        other = sorted(e.name for e in ck_dir.iterdir()
                       if e.name != CKPT.name and not e.name.startswith(".last.pt.tmp-"))
        if other:
            raise UsageError(f"{str(ck_dir)!r} holds {', '.join(map(repr, other[:3]))}, which this script did not "
                             "write; choose a new or empty output folder")
    ck = load_ckpt(out / CKPT) if (out / CKPT).is_file() else None
    return ck, meta


def check_resume(ck: dict, args, cfg: dict, path: Path) -> None:
    """A checkpoint may continue only the run it belongs to: same model shape and trajectory, --steps >= its step."""
    if ck["model_cfg"] != cfg:
        raise UsageError(f"{str(path)!r} is a run of another model ({describe_cfg(ck['model_cfg'])}; --model "
                         f"{ck['args']['model']}) than --model {args.model} ({describe_cfg(cfg)}); resume it with "
                         "its own --model, or choose another --out")
    if args.steps < ck["step"]:
        raise UsageError(f"--steps {args.steps} is below the checkpoint's step {ck['step']} ({str(path)!r}); "
                         f"--steps is the run's total: give at least {ck['step']}")
    diff = [k for k in SAME_ON_RESUME if ck["args"][k] != getattr(args, k)]
    if diff:
        was = " ".join(f"--{k.replace('_', '-')} {ck['args'][k]}" for k in diff)
        now = " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in diff)
        raise UsageError(f"{str(path)!r} was trained with {was}, not {now}; an exact resume needs the same values")


def save_ckpt(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a hidden temp file beside it, fsynced, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def drop_stale_tmp(ck_dir: Path) -> None:
    """Temp checkpoints a killed run left behind (its pid is gone)."""
    from edgeclip.outputs import _alive
    for t in ck_dir.glob(".last.pt.tmp-*"):
        pid = t.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            t.unlink(missing_ok=True)


def main(argv=None):
    try:
        return _main(argv)
    except (UsageError, EdgeClipError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _main(argv=None):
    from edgeclip.models import model_config
    from edgeclip.outputs import one_writer
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.card_only:
        return write_card(args.out)
    for k in ("steps", "batch_size", "warmup", "eval_images", "eval_pairs"):
        if getattr(args, k) < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be at least 1, not {getattr(args, k)}")
    out = Path(os.path.abspath(os.path.expanduser(args.out)))
    model = create_model(resolve_model(args.model), seed=args.seed).train()
    cfg = plain(model_config(model))
    ck, finished = inspect_out(out)
    if ck is not None and not args.resume:
        raise UsageError(f"--out {args.out!r} holds an unfinished run (step {ck['step']} of {ck['args']['steps']}); "
                         "pass --resume to continue it, or choose another --out")
    if ck is not None:
        check_resume(ck, args, cfg, out / CKPT)
    elif args.resume and finished is not None:
        done = finished["args"]
        if done.get("steps") == args.steps and plain(finished["model_cfg"]) == cfg and \
                all(done.get(k) == getattr(args, k) for k in SAME_ON_RESUME):
            print(f"{args.out}: this run already finished (step {args.steps}); nothing to resume")
            return None
        raise UsageError(f"--out {args.out!r} holds a finished teacher ({done.get('steps')} steps) and no checkpoint: "
                         "nothing to resume; run without --resume to train a new one in its place")
    with one_writer(out):
        return train(args, model, cfg, out, ck)


def train(args, model, cfg: dict, out: Path, ck: dict | None):
    tok = get_tokenizer(model)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "logit" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    start, history, prev_minutes, segments, loss_v = 0, [], 0.0, [], float("nan")
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        start, history, prev_minutes, segments = ck["step"], ck["history"], ck["wall_minutes"], ck["segments"]
        loss_v = ck["loss"]
        note = "" if ck["args"]["steps"] == args.steps else \
            f"; the cosine now ends at step {args.steps} (was {ck['args']['steps']})"
        print(f"resuming {out / CKPT} at step {start} of {args.steps} (run {len(segments) + 1}, "
              f"{prev_minutes:.0f} min so far){note}", flush=True)
    elif args.resume:
        print(f"no checkpoint in {out / 'ckpt'}: starting at step 0", flush=True)
    drop_stale_tmp(out / "ckpt")
    data = ShapesWorld("train", model.visual.image_size[0])
    offset = args.seed * 10_000_000
    t0 = last_ckpt = time.time()
    if args.stop_at is not None and start < args.steps and args.stop_at <= start:
        print(f"already at step {start}, not before --stop-at {args.stop_at}: nothing to do", flush=True)
        return None

    def minutes() -> float:
        return prev_minutes + (time.time() - t0) / 60

    def checkpoint(step: int) -> None:
        seg = segments + [{"from": start, "to": step, "minutes": (time.time() - t0) / 60}]
        save_ckpt(out / CKPT, {
            "format": CKPT_FORMAT, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": torch.get_rng_state(), "model_cfg": cfg, "args": plain(vars(args)), "history": plain(history),
            "loss": loss_v, "wall_minutes": minutes(), "segments": plain(seg)})
        tqdm.write(json.dumps({"checkpoint": step, "loss": round(loss_v, 4), "min": round(minutes(), 1)}))

    stop_signal = []

    def on_signal(signum, frame):  # finish the step, write the checkpoint, then exit
        stop_signal.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        bar = tqdm(total=args.steps, initial=start, desc="teacher", mininterval=5)
        step = start
        while step < args.steps:
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
            step, loss_v = step + 1, loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3f}", refresh=False)
            if (args.eval_every and step % args.eval_every == 0) or step == args.steps:
                model.eval()
                ev = evaluate_shapes(model, tok, n_zeroshot=args.eval_images, n_retrieval=args.eval_pairs)
                model.train()
                rec = {"step": step, "loss": loss_v, "minutes": minutes(),
                       "zero_shot": ev.zero_shot, "retrieval": ev.retrieval}
                history.append(plain(rec))
                tqdm.write(json.dumps({"step": step, "seen": round(ev.zero_shot["seen_top1"], 1),
                                       "held_out": round(ev.zero_shot["held_out_top1"], 1),
                                       "i2t_R@1": round(ev.retrieval["i2t_R@1"], 1), "min": round(minutes(), 1)}))
            pause = (args.stop_at is not None and step >= args.stop_at) or stop_signal or \
                (args.max_minutes is not None and time.time() - t0 >= args.max_minutes * 60)
            if pause or (args.ckpt_minutes and time.time() - last_ckpt >= args.ckpt_minutes * 60):
                checkpoint(step)
                last_ckpt = time.time()
            if pause:
                bar.close()
                why = f"signal {signal.Signals(stop_signal[0]).name}" if stop_signal else "as asked"
                print(f"paused at step {step} of {args.steps} ({why}); continue with --resume", flush=True)
                if stop_signal:
                    raise SystemExit(128 + stop_signal[0])
                return None
        bar.close()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if not history or history[-1]["step"] != step:  # --steps lowered to a checkpoint's step off the eval grid
        model.eval()
        ev = evaluate_shapes(model, tok, n_zeroshot=args.eval_images, n_retrieval=args.eval_pairs)
        history.append(plain({"step": step, "loss": loss_v, "minutes": minutes(), "zero_shot": ev.zero_shot,
                              "retrieval": ev.retrieval}))
    if start < args.steps:  # a crash in the final evaluation or save must not lose the training
        checkpoint(step)
    finish(args, model, out, history, segments + [{"from": start, "to": step, "minutes": (time.time() - t0) / 60}],
           minutes())
    return None


def finish(args, model, out: Path, history: list, segments: list, wall_minutes: float) -> None:
    """Write the teacher folder beside OUT, then swap it in as a whole (the checkpoint goes with the old OUT)."""
    import shutil

    from edgeclip.outputs import replace_with, staging_path
    model.eval()
    args_d = {k: v for k, v in plain(vars(args)).items()
              if k not in ("resume", "stop_at", "max_minutes", "card_only", "ckpt_minutes")}
    train_info = {"args": args_d, "history": history, "wall_minutes": wall_minutes,
                  "torch_threads": args.threads, "cpu_cores": os.cpu_count(), "segments": segments}
    tmp = staging_path(out)
    try:
        save_student(model, tmp, fp16=True, extra={"reference_teacher": train_info})
        (tmp / "scores.json").write_text(json.dumps(history[-1], indent=2) + "\n")
        write_card(str(tmp))
        replace_with(tmp, out)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
