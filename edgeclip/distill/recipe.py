"""The default distillation recipe: one home for what ``compress``, the CLI and the quickstart train with.

Chosen by measurement (``benchmarks/recipe_ablation.py``, results in ``benchmarks/results/recipe_ablation.json``);
change it only together with a new ablation run.
"""
from __future__ import annotations

DEFAULT_LOSS: dict[str, float] = {"affinity": 1.0, "feature": 2000.0, "icl": 1.0, "contrastive": 1.0}
DEFAULT_VIEWS: int = 1                               # augmented views per sample (1: the plain image only)
DEFAULT_SHAPE: str = "auto"                          # student shape at a budget (models.params.STUDENT_SHAPES)
