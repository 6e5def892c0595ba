"""The ``edgeclip`` command: thin argparse wrappers, one per pipeline stage.

Errors a user can cause (``EdgeClipError``) print one line and exit 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from . import __version__
from .errors import EdgeClipError

COMMANDS = ("compress", "teach", "prepare", "export", "parity", "eval", "bench", "demo", "quickstart", "info",
            "models")
# Packages of the [train] extra: a command that imports one of them on a torch-free (runtime-only) install gets
# one line naming the extra instead of a traceback.
TRAIN_PACKAGES = ("torch", "torchvision", "open_clip", "timm", "onnx", "onnxscript", "safetensors", "huggingface_hub")
TRAIN_HINT = "pip install 'edgeclip[train]'"


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


def _epilog() -> str:
    have = importlib.util.find_spec("torch") is not None
    return ("Commands that train, evaluate or export load PyTorch models and need the [train] extra "
            f"({TRAIN_HINT}){'' if have else '; this install lacks it (runtime only: import edgeclip.runtime)'}.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeclip", description="Compress CLIP teachers into edge students, "
                                "export them to ONNX/TensorRT and prove parity.", epilog=_epilog(),
                                allow_abbrev=False)
    p.add_argument("--version", action="version", version=f"edgeclip {__version__}", help="print the version")
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
    for q in sub.choices.values():  # every subcommand, wherever it was added: '--step' is not '--steps'
        q.allow_abbrev = False
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
    except ModuleNotFoundError as e:  # a runtime-only install (no torch) running a training command
        if (e.name or "").split(".")[0] not in TRAIN_PACKAGES:
            raise
        print(f"edgeclip {args.command}: error: needs the [train] extra (no module {e.name!r}): {TRAIN_HINT}",
              file=sys.stderr)
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
