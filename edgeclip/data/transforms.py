"""Tensor conversion of rendered images, identical to open_clip's eval transform at native size."""
from __future__ import annotations

import numpy as np
import torch

from ..models.io import OPENAI_MEAN, OPENAI_STD


def to_tensor(images: np.ndarray, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """uint8 [B, H, W, 3] --> normalised float32 [B, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s
