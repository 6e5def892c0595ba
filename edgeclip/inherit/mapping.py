"""Explicit weight transplant (nanoGPT's ``from_pretrained`` pattern): teacher key -> student key + index sets.

A ``Plan`` maps every student tensor to one teacher tensor and, per dimension, the teacher indices to keep.
``apply_plan`` checks that every student parameter is covered, that shapes match exactly, and reports the
teacher keys left unused (dropped layers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InheritError


@dataclass
class Plan:
    # student key -> (teacher key, {dim: LongTensor of teacher indices})
    entries: dict[str, tuple[str, dict[int, torch.Tensor]]] = field(default_factory=dict)
    layers: dict[str, list[int]] = field(default_factory=dict)  # tower -> kept teacher layers

    def add(self, student_key: str, teacher_key: str, **dims: torch.Tensor) -> None:
        self.entries[student_key] = (teacher_key, {int(k[1:]): v for k, v in dims.items()})


@dataclass
class InheritReport:
    method: str
    layers: dict[str, list[int]]
    inherited: int  # number of student tensors copied from the teacher
    fresh: list[str]  # student tensors left at their random init
    unused_teacher_keys: int

    def to_dict(self) -> dict:
        return {"method": self.method, "layers": self.layers, "inherited": self.inherited, "fresh": self.fresh,
                "unused_teacher_keys": self.unused_teacher_keys}


def apply_plan(student, teacher_sd: dict[str, torch.Tensor], plan: Plan, method: str) -> InheritReport:
    """Copy the selected teacher slices into ``student`` (in place)."""
    own = student.state_dict()
    missing = [k for k in own if k not in plan.entries]
    if missing:
        raise InheritError(f"no inheritance rule for student tensor {missing[0]!r} ({len(missing)} uncovered)")
    used, new_sd = set(), {}
    for skey, (tkey, dims) in plan.entries.items():
        if tkey not in teacher_sd:
            raise InheritError(f"teacher has no tensor {tkey!r} (needed for student {skey!r})")
        t = teacher_sd[tkey]
        for d, idx in dims.items():
            t = t.index_select(d, idx.to(t.device))
        if t.shape != own[skey].shape:
            raise InheritError(f"{skey!r}: teacher slice of {tkey!r} has shape {tuple(t.shape)}, student expects "
                               f"{tuple(own[skey].shape)}")
        new_sd[skey] = t.to(own[skey].dtype).clone()
        used.add(tkey)
    student.load_state_dict(new_sd)
    return InheritReport(method=method, layers=plan.layers, inherited=len(new_sd), fresh=[],
                         unused_teacher_keys=len(set(teacher_sd) - used))
