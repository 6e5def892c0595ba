"""``demo``, ``quickstart``: try edgeclip end to end (build the reference student, then serve it beside its teacher)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs import check_output
from ..artifact import MANIFEST, PARITY_MD
from ..errors import ConfigError
from .. import limits as L
from .common import TEXT, budget, photos_default, spec_path, stages, verdict

QUICKSTART_OUT = "runs/quickstart"
QUICKSTART_ARTIFACT = f"{QUICKSTART_OUT}/artifact"  # where 'edgeclip demo' looks by default


def _cmd_demo(a) -> int:
    """Check the demo's install first, build the quickstart student when the default artifact is missing, serve."""
    import importlib.util

    from ..errors import BackendError
    if importlib.util.find_spec("gradio") is None:  # before anything is loaded, and before a 10-minute quickstart
        raise BackendError("the demo needs gradio, which is not installed: pip install 'edgeclip[demo]'")
    try:
        from ..apps.demo.app import serve
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("edgeclip.apps"):
            raise BackendError(f"this edgeclip install has no demo app ({e.name} is missing): reinstall edgeclip "
                               "(pip install 'edgeclip[demo]', or pip install -e . in a checkout)") from None
        raise BackendError(f"the demo needs {e.name!r}, which is not installed: pip install 'edgeclip[demo]'") from None
    if not (Path(a.artifact) / MANIFEST).is_file():
        if a.artifact != QUICKSTART_ARTIFACT:
            raise ConfigError(f"no exported artifact at {a.artifact!r}; run 'edgeclip export MODEL --onnx --out DIR'")
        print("no quickstart student yet: running 'edgeclip quickstart' first (about 10 min on 2 cores)")
        p = argparse.ArgumentParser(prog="edgeclip")
        add_parser(p.add_subparsers(dest="command"))
        _cmd_quickstart(p.parse_args(["quickstart"]))  # with its own defaults; a failed parity gate raises
    serve(a.artifact, a.teacher, a.gallery, a.host, a.port, block=True, pretrained=a.teacher_pretrained)
    return 0


def _cmd_quickstart(a) -> int:
    """compress + export into --out; an earlier quickstart (--overwrite) is replaced only once both are done."""
    import atexit
    import shutil
    from ..outputs import output_kind, replace_with, staging_path
    from ..distill import compress
    from ..export import export_artifact
    out = check_output(a.out, "run", a.overwrite, inputs=[spec_path("reference"), a.images])
    work = staging_path(out) if output_kind(out) == "run" else out  # an earlier run passes only with --overwrite
    if work != out:
        atexit.register(shutil.rmtree, work.parent, True)  # a failed quickstart leaves the earlier one as it was
    res = compress("reference", a.target, data=f"shapes:{a.samples}", steps=a.steps, out=work, stages=a.stages,
                   batch_size=a.batch_size, seed=a.seed)
    art = export_artifact(res.student, work / "artifact", ["fp32", "fp32-opt", "fp16", "int8-dynamic"],
                          images_dir=a.images)
    if work != out:
        replace_with(work, out)
        work.parent.rmdir()
    print((out / "report.md").read_text())
    print((out / "artifact" / PARITY_MD).read_text())
    print(f"student: {out / 'student'}\nartifact: {out / 'artifact'}")
    return verdict(art.parity)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register demo and quickstart on the ``edgeclip`` subparsers."""
    q = sub.add_parser("demo", help="launch the Gradio demo (student ONNX next to teacher PyTorch)")
    q.add_argument("--artifact", type=TEXT, default=QUICKSTART_ARTIFACT,
                   help="exported student artifact folder (default: the "
                   "quickstart's, built first when missing)")
    q.add_argument("--teacher", type=TEXT, default="reference", help="teacher spec")
    q.add_argument("--teacher-pretrained", type=TEXT, default=None, help="checkpoint FILE of the --teacher named")
    q.add_argument("--gallery", type=TEXT, default=None,
                   help="image folder for the gallery (default: ShapesWorld scenes)")
    q.add_argument("--host", type=TEXT, default="127.0.0.1", help="bind address")
    q.add_argument("--port", type=L.PORT, default=7860, help="port")
    q.set_defaults(func=_cmd_demo)

    q = sub.add_parser("quickstart", help="compress the reference teacher, export it, check parity, print the report")
    q.add_argument("--target", default="25%", type=budget, help="vision budget (default 25%% of the teacher)")
    q.add_argument("--steps", type=L.STEPS, default=800, help="distillation steps")
    q.add_argument("--samples", type=L.SHAPES_PAIRS, default=12_800, help="ShapesWorld training pairs")
    q.add_argument("--stages", default=1, type=stages, help="'auto' or a number of stages")
    q.add_argument("--batch-size", type=L.BATCH, default=128, help="pairs per step")
    q.add_argument("--seed", type=L.SEED, default=0, help="seed")
    q.add_argument("--images", type=TEXT, default=photos_default(), help="photos for parity")
    q.add_argument("--out", type=TEXT, default=QUICKSTART_OUT, help="output folder")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier quickstart run at --out")
    q.set_defaults(func=_cmd_quickstart)
