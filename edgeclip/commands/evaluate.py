"""``eval``, ``info``, ``models``: how well a model does, how big it is, which architectures edgeclip ships."""
from __future__ import annotations

import argparse
import json

from ..outputs import check_output
from .. import limits as L
from .common import TEXT, add_csv_flags, load_model, spec_path


def _cmd_eval(a) -> int:
    from ..outputs import write_json
    from ..evaluate import evaluate_model
    inputs = [spec_path(a.model), a.teacher and spec_path(a.teacher), a.data, a.classes]
    out = None if a.out is None else check_output(a.out, "eval-report", a.overwrite, inputs)
    model = load_model(a.model, a.pretrained)
    teacher = load_model(a.teacher, a.teacher_pretrained) if a.teacher else None
    res = evaluate_model(model, a.data, teacher=teacher, class_names=a.classes, limit=a.limit,
                         csv_img_key=a.csv_img_key, csv_caption_key=a.csv_caption_key, csv_separator=a.csv_separator)
    print(json.dumps(res, indent=2))
    if out is not None:
        write_json(out, {"edgeclip_output": "eval-report", **res})
    return 0


def _cmd_info(a) -> int:
    from ..models import load_teacher
    from ..models.params import count_params
    model = load_teacher(a.model, pretrained=a.pretrained)
    print(f"{a.model}\n{count_params(model).table()}")
    return 0


def _cmd_models(a) -> int:
    from ..models import list_models
    print("\n".join(list_models(include_open_clip=a.all)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register eval, info and models on the ``edgeclip`` subparsers."""
    q = sub.add_parser("eval", help="zero-shot and retrieval metrics of a model")
    q.add_argument("model", type=TEXT, help="model to evaluate (name, student folder, HF folder, 'reference')")
    q.add_argument("--data", type=TEXT, default="shapes", help="'shapes', an image folder (class per sub-folder or "
                   "manifest.csv) or a CSV of image,caption pairs")
    q.add_argument("--pretrained", type=TEXT, default=None, help="checkpoint FILE of the model named")
    add_csv_flags(q)
    q.add_argument("--classes", type=TEXT, default=None, help="class-name file (one per line) for an image folder")
    q.add_argument("--teacher", type=TEXT, default=None, help="also report teacher-student agreement")
    q.add_argument("--teacher-pretrained", type=TEXT, default=None, help="checkpoint FILE of the --teacher named")
    q.add_argument("--limit", type=L.LIMIT, default=None, help="evaluate at most N items (images for a CSV)")
    q.add_argument("--out", type=TEXT, default=None, help="write the JSON report here")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier eval report at --out")
    q.set_defaults(func=_cmd_eval)

    q = sub.add_parser("info", help="print the parameter table of a teacher or student")
    q.add_argument("model", type=TEXT, help="model name (e.g. ViT-B-32), student folder, HF folder, or 'reference'")
    q.add_argument("--pretrained", type=TEXT, default=None, help="local checkpoint file for a model name")
    q.set_defaults(func=_cmd_info)

    q = sub.add_parser("models", help="list edgeclip's model configs")
    q.add_argument("--all", action="store_true", help="include every open_clip builtin")
    q.set_defaults(func=_cmd_models)
