"""The ``edgeclip`` command: thin argparse wrappers, one per pipeline stage.

Errors a user can cause (``EdgeClipError``) print one line and exit 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import EdgeClipError

COMMANDS = ("compress", "export", "parity", "eval", "demo", "quickstart", "info", "models", "bench")


def _cmd_info(a) -> int:
    from .models import load_teacher
    from .models.params import count_params
    model = load_teacher(a.model, pretrained=a.pretrained)
    print(f"{a.model}\n{count_params(model).table()}")
    return 0


def _cmd_models(a) -> int:
    from .models import list_models
    print("\n".join(list_models(include_open_clip=a.all)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeclip", description="Compress CLIP teachers into edge students, "
                                "export them to ONNX/TensorRT and prove parity.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    q = sub.add_parser("info", help="print the parameter table of a teacher or student")
    q.add_argument("model", help="model name (e.g. ViT-B-32), student folder, HF folder, or 'reference'")
    q.add_argument("--pretrained", default=None, help="local checkpoint file for a model name")
    q.set_defaults(func=_cmd_info)
    q = sub.add_parser("models", help="list edgeclip's model configs")
    q.add_argument("--all", action="store_true", help="include every open_clip builtin")
    q.set_defaults(func=_cmd_models)
    from . import commands
    commands.add_commands(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeClipError as e:
        print(f"edgeclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions, missing paths the command did not check itself
        where = f" ({e.filename})" if e.filename else ""
        print(f"edgeclip {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeclip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
