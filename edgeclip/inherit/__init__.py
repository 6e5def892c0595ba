"""Weight inheritance: start the student from the teacher's own weights (TinyCLIP, ICCV 2023).

``inherit_weights`` is the one entry point the distiller calls; ``manual`` and ``auto`` hold the two methods.
Paper: https://arxiv.org/abs/2309.12314
"""
from __future__ import annotations

from ..errors import InheritError
from ..models.factory import create_model, model_config
from .mapping import InheritReport, apply_plan
from .manual import DEPTH_RULES, WIDTH_RULES, manual_plan, select_layers

METHODS = ("manual", "scratch")  # "auto" is run through edgeclip.distill.prune.prune_and_fuse

__all__ = ["inherit_weights", "InheritReport", "select_layers", "DEPTH_RULES", "WIDTH_RULES", "METHODS"]


def inherit_weights(teacher, student_cfg: dict, method: str = "manual", depth: str = "interval",
                    width: str = "leading", seed: int = 0):
    """Build a student of ``student_cfg`` initialised from ``teacher``.

    Args:
        teacher: canonical CLIP (from ``load_teacher``).
        student_cfg: open_clip config of the student (``edgeclip.models.params.student_config``).
        method: ``"manual"`` (layer + channel selection) or ``"scratch"`` (random init, the baseline).
        depth: ``"interval"`` (TinyCLIP) or ``"uniform"``.
        width: ``"leading"`` (TinyCLIP) or ``"magnitude"``.
        seed: random-init seed (scratch students, and any tensor not inherited).

    Returns:
        (student model in eval mode, ``InheritReport``).

    Raises:
        InheritError: a student tensor cannot be mapped onto the teacher.

    Example:
        >>> student, report = inherit_weights(teacher, student_config(model_config(teacher), "8M"))
    """
    student = create_model(student_cfg, seed=seed)
    if method == "scratch":
        return student, InheritReport("scratch", {}, 0, list(student.state_dict()), len(teacher.state_dict()))
    if method != "manual":
        raise InheritError(f"unknown inheritance method {method!r}; choose from {METHODS} "
                           "(auto pruning: edgeclip.distill.prune.prune_and_fuse)")
    if model_config(teacher).get("edgeclip_layers") or student_cfg.get("edgeclip_layers"):
        raise InheritError("manual inheritance needs uniform configs (per-layer sizes come only from auto fuse)")
    plan = manual_plan(teacher.state_dict(), model_config(teacher), student_cfg, depth, width)
    report = apply_plan(student, teacher.state_dict(), plan, f"manual/{depth}/{width}")
    return student.eval(), report
