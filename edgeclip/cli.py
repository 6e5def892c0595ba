"""The ``edgeclip`` command: build the argparse parser from the command groups in ``edgeclip/commands/``, run
the chosen subcommand, and turn the errors a user can cause into one line.

Errors a user can cause (``EdgeClipError``, ``OSError``, a missing [train] package) print one line and exit 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from . import __version__
from .commands import demo, deploy, evaluate, train
from .errors import EdgeClipError

GROUPS = (train, evaluate, deploy, demo)  # ``edgeclip --help`` lists their commands in this order
# Packages of the [train] extra: a command that imports one of them on a torch-free (runtime-only) install gets
# one line naming the extra instead of a traceback.
TRAIN_PACKAGES = ("torch", "torchvision", "open_clip", "timm", "onnx", "onnxscript", "safetensors", "huggingface_hub")
TRAIN_HINT = "pip install 'edgeclip[train]'"


def _epilog() -> str:
    have = importlib.util.find_spec("torch") is not None
    return ("Commands that train, evaluate or export load PyTorch models and need the [train] extra "
            f"({TRAIN_HINT}){'' if have else '; this install lacks it (runtime only: import edgeclip.runtime)'}.")


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: every group adds its subcommands, each with ``func`` set to the function that runs it."""
    p = argparse.ArgumentParser(prog="edgeclip", description="Compress CLIP teachers into edge students, "
                                "export them to ONNX/TensorRT and prove parity.", epilog=_epilog(),
                                allow_abbrev=False)
    p.add_argument("--version", action="version", version=f"edgeclip {__version__}", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    for q in sub.choices.values():  # every subcommand, whichever group added it: '--step' is not '--steps'
        q.allow_abbrev = False
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    for a in sub._actions:  # argparse reads '--opt=--' as the end-of-options marker and stores [], unchecked
        if a.nargs is None and a.option_strings and getattr(args, a.dest, None) == []:
            sub.error(f"argument {'/'.join(a.option_strings)}: expected one argument")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run ``edgeclip ARGV``; returns the exit code (0 ok, 2 a user error in one line, 130 interrupted)."""
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
