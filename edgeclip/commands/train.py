"""``compress``, ``teach``, ``prepare``: the commands that make a student (distill a teacher, store its embeddings,
re-encode shards once at the student's resolution)."""
from __future__ import annotations

import argparse

# Short local names of the shared argparse types and helpers, as the parsers and handlers below use them.
from .. import limits as L
from .common import TEXT, add_csv_flags as _add_csv_flags, budget as _budget, checked, csv_data as _csv_data
from .common import device as _device, load_model as _model, stages as _stages


def _check_data(value: str) -> None:
    """--data: not empty; 'shapes:N' needs a whole N in range (other sources are checked when opened)."""
    from ..data.pairs import shapes_count
    from ..errors import ConfigError
    if not value.strip():
        raise ConfigError("data must name a CSV, webdataset shards or 'shapes[:N]', got ''")
    shapes_count(value)


def _check_loss(value: str) -> None:
    """--loss: NAME=WEIGHT pairs (the one parser: ``edgeclip.distill.losses.parse_loss``)."""
    from ..distill.losses import parse_loss
    parse_loss(value)


def _check_views(value: str) -> None:
    from ..data.augment import check_views
    check_views(int(value) if value.isdigit() else value)


_data = checked(_check_data, bad=("", " ", "shapes:0", "shapes:-1", "shapes:x", "shapes:1.5", "shapes:99999999999"))
_loss = checked(_check_loss, bad=("", "affinity=1,affinity=2", "affinity=-1", "affinity=nan", "affinity=inf",
                                  "nope=1", "affinity", "affinity=1,,feature=2", "affinity=0"))
_views = checked(_check_views, bad=("", "0", "-1", "65", "1.5", "x", "nan"))
S = argparse.SUPPRESS  # a setting not given on the command line keeps its group's default (or --config's value)
# CLI flags that say a setting the other way round: flag -> (setting, value when the flag is given)
_NEGATED = {"per_layer": ("tie_layers", False), "drop_ckpt": ("keep_ckpt", False)}


def _settings(a) -> dict:
    """The group settings given on the command line, by their field names (``options.FIELDS``)."""
    from ..distill.options import FIELDS
    given = {k: v for k, v in vars(a).items() if k in FIELDS}
    given.update({field: value for flag, (field, value) in _NEGATED.items() if getattr(a, flag, False)})
    if "views" in given:
        given["views"] = int(given["views"])
    return given


def _cmd_compress(a) -> int:
    from ..distill import compress
    from ..distill.options import Settings, read_config
    base = read_config(a.config) if a.config else Settings()  # the flags given override the file
    teacher = _model(a.teacher, a.pretrained) if a.pretrained else a.teacher
    res = compress(teacher, a.target, data=_csv_data(a, a.data), out=a.out, resume=a.resume,
                   overwrite=a.overwrite, recipe=base.recipe, schedule=base.schedule, run=base.run, **_settings(a))
    if not res.report:  # a torchrun rank other than 0: rank 0 prints
        return 0
    print((res.out / "report.md").read_text())
    print(f"student: {res.out / 'student'}")
    return 0


def _cmd_teach(a) -> int:
    from ..distill.store import teach
    m = teach(a.teacher, a.data, a.out, batch_size=a.batch_size, workers=a.workers, device=a.device,
              overwrite=a.overwrite, views=int(a.views))
    if m:  # rank 0
        print(f"teacher store: {a.out} ({m['count']} samples, {len(m['shards'])} shards, dims {m['dims']}; skipped "
              f"{sum(m['skipped'].values())}: {m['skipped'] or 'none'})")
    return 0


def _cmd_prepare(a) -> int:
    from ..data.prepare import prepare_shards
    m = prepare_shards(a.data, a.out, size=a.size, quality=a.quality, workers=a.workers, overwrite=a.overwrite)
    print(f"prepared shards: {a.out} ({m['written']} pairs at {m['size']} px in {len(m['shards'])} shards; "
          f"skipped {sum(m['skipped'].values())}: {m['skipped'] or 'none'})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register compress, teach and prepare on the ``edgeclip`` subparsers."""
    # the defaults named in the help texts are the groups' (tests/test_cli.py holds them in step); the parser is
    # built without importing them, so that 'edgeclip --help' works on a torch-free install
    q = sub.add_parser("compress", help="distill a teacher into a smaller student",
                       description="Settings not given keep the defaults of edgeclip.distill.options (Recipe, "
                       "Schedule, RunConfig) or, with --config, that file's values.")
    q.add_argument("teacher", type=TEXT,
                   help="'reference', an open_clip name, a student folder or an HF CLIPModel folder")
    q.add_argument("--target", required=True, type=_budget, help="vision budget ('8M', '500k', '25%%') or JSON "
                   "'{\"image\": \"8M\", \"text\": \"3M\"}'")
    q.add_argument("--pretrained", type=TEXT, default=None,
                   help="checkpoint FILE of the teacher named (open_clip's --model "
                   "NAME --pretrained FILE); .safetensors, or .pt/.bin read without unpickling code")
    q.add_argument("--data", default=None, type=_data, help="a CSV (open_clip's filepath/title columns), webdataset "
                   "shards ('shards/{00000..00099}.tar', a folder of .tar, 'pipe:CMD'), or 'shapes[:N]' (the default "
                   "only for the reference teacher and its students)")
    q.add_argument("--config", type=TEXT, default=None,
                   help="JSON of settings {\"recipe\": {...}, \"schedule\": {...}, "
                   "\"run\": {...}}, such as an earlier run's OUT/run.json (flags given here override it)")
    _add_csv_flags(q)
    q.add_argument("--steps", type=L.STEPS, default=S, help="optimizer steps in total, split across stages "
                   "(default 800)")
    q.add_argument("--epochs", type=L.EPOCHS, default=S, help="epochs over the data (overrides --steps)")
    q.add_argument("--method", choices=("manual", "auto", "scratch"), default=S, help="weight inheritance "
                   "(default manual)")
    q.add_argument("--stages", default=S, type=_stages, help="'auto' (<= ~50%% cut per stage; the default) or a "
                   "number")
    q.add_argument("--per-layer", action="store_true", help="auto method: untie masks so each layer of the last "
                   "stage keeps its own head/MLP counts (loads through edgeclip, not plain open_clip)")
    q.add_argument("--prune-steps", type=L.PRUNE_STEPS, default=S,
                   help="auto method: L0-mask steps per stage (default 200)")
    q.add_argument("--depth", choices=("interval", "uniform"), default=S, help="layer selection rule (default "
                   "interval)")
    q.add_argument("--width", choices=("leading", "magnitude"), default=S, help="channel selection rule (default "
                   "leading)")
    q.add_argument("--batch-size", type=L.BATCH, default=S, help="pairs per step (default 128)")
    q.add_argument("--lr", type=L.LR, default=S, help="peak learning rate (default 5e-4 * batch/128)")
    q.add_argument("--device", type=_device, default=S, help="cpu (the default), cuda or cuda:N (under torchrun: "
                   "cuda:LOCAL_RANK, nccl)")
    q.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=S,
                   help="autocast precision on CUDA (loss and softmax stay fp32); fp32 on the CPU")
    q.add_argument("--workers", type=L.WORKERS, default=S, help="DataLoader workers decoding images "
                   "(default min(8, cores-1); 0: decode in the training process)")
    q.add_argument("--teacher-store", type=TEXT, default=S, help="teacher embeddings written by 'edgeclip teach' "
                   "(stored samples never run the teacher)")
    q.add_argument("--no-teacher-cache", dest="cache_teacher", action="store_false", default=S,
                   help="run the teacher on every step instead of keeping its embeddings (flat memory)")
    q.add_argument("--decode", choices=("cpu", "gpu"), default=S, help="where images are decoded: cpu "
                   "(DataLoader workers) or gpu (nvjpeg on --device cuda; webdataset shards only; unverified)")
    q.add_argument("--loss", type=_loss, default=S, help="loss terms and weights, e.g. "
                   "'affinity=1,feature=2000' (terms: affinity, feature, icl, contrastive; default: the measured "
                   "best recipe, edgeclip.distill.recipe)")
    q.add_argument("--vocab", type=L.VOCAB, default=S, help="a pruned vocabulary of this many tokens (CLIP's "
                   "first merges by rank; rows inherited from the teacher by token string); default CLIP's 49,408")
    q.add_argument("--vocab-corpus", type=TEXT, default=S, help="prune the vocabulary to the merges this text file "
                   "fires (one text per line: every text keeps its exact tokens); with --vocab, both")
    q.add_argument("--views", type=_views, default=S, help="augmented views per sample: 1 = "
                   "plain images, K = the image + K-1 seeded random-resized crops/flips whose teacher embeddings "
                   "are cached (default: the recipe's)")
    q.add_argument("--shape", choices=("auto", "deep", "wide", "balanced"), default=S, help="which student of "
                   "the budget: deep (teacher's depth, narrower), wide (teacher's width, fewer layers), balanced, or "
                   "auto (wide while >= 1/4 of the layers stay, else deep; the default)")
    q.add_argument("--seed", type=L.SEED, default=S, help="seed for init and data order (default 0)")
    q.add_argument("--resume", action="store_true", help="continue from OUT/ckpt after an interruption")
    q.add_argument("--drop-ckpt", action="store_true", help="delete OUT/ckpt (resumable checkpoints, several "
                   "times the student's size) once the run has succeeded")
    q.add_argument("--hf", action="store_true", default=S, help="also save a Hugging Face CLIPModel copy "
                   "(student/hf)")
    q.add_argument("--out", type=TEXT, default="runs/student", help="output folder")
    q.add_argument("--overwrite", action="store_true", help="start over in an --out that holds an earlier run "
                   "(it is replaced only once the new run is complete)")
    q.set_defaults(func=_cmd_compress)

    q = sub.add_parser("teach", help="run a teacher once over the data and store its embeddings (for compress "
                       "--teacher-store)")
    q.add_argument("teacher", type=TEXT,
                   help="'reference', an open_clip name, a student folder or an HF CLIPModel folder")
    q.add_argument("--data", type=TEXT, required=True,
                   help="'shapes[:N]', a CSV/TSV (filepath,title) or webdataset shards")
    q.add_argument("--out", type=TEXT, required=True, help="store folder to write")
    q.add_argument("--batch-size", type=L.TEACH_BATCH, default=256, help="pairs per teacher forward (per rank)")
    q.add_argument("--workers", type=L.WORKERS, default=None, help="DataLoader workers decoding images "
                   "(default min(8, cores-1))")
    q.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    q.add_argument("--overwrite", action="store_true", help="replace an existing teacher store at --out")
    q.add_argument("--views", type=_views, default="1", help="also store augmented views 1..K-1 "
                   "of every sample (for compress --views K; one teacher pass per view)")
    q.set_defaults(func=_cmd_teach)

    q = sub.add_parser("prepare", help="re-encode webdataset shards once at the student's resolution (faster "
                       "decoding in every later epoch)")
    q.add_argument("--data", type=TEXT, required=True,
                   help="source webdataset shards ('shards/{00000..00099}.tar', a folder "
                   "of .tar, 'pipe:CMD')")
    q.add_argument("--size", type=L.PREPARE_SIZE, default=256,
                   help="shortest side in px after preparation (default 256; "
                   "smaller images are kept as they are)")
    q.add_argument("--out", type=TEXT, required=True, help="new folder for the prepared shards (+ manifest.json)")
    q.add_argument("--quality", type=L.JPEG_QUALITY, default=90, help="JPEG quality of the re-encoded images (1-100)")
    q.add_argument("--workers", type=L.WORKERS, default=None, help="processes re-encoding (default min(8, cores-1); "
                   "0: in this process)")
    q.add_argument("--overwrite", action="store_true", help="replace earlier prepared shards at --out")
    q.set_defaults(func=_cmd_prepare)
