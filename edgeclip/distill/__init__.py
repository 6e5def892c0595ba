"""Distillation: loss terms, trainer, multi-stage plans, and ``compress()``."""
from .compress import CompressResult, compress
from .options import Recipe, RunConfig, Schedule
from .losses import affinity_kl, affinity_loss
from .stages import Stage, plan_stages
from .cache import TeacherCache
from .config import DistillConfig
from .trainer import distill

__all__ = ["compress", "CompressResult", "Recipe", "Schedule", "RunConfig", "plan_stages", "Stage", "distill", "DistillConfig", "TeacherCache",
           "affinity_loss", "affinity_kl"]
