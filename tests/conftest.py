"""Shared fixtures: tiny seeded models, the reference teacher, and the real-photo folder (skips if absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("EDGECLIP_TEST_THREADS", min(2, os.cpu_count() or 1))))
ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-sample-200"
TINY_CFG = {  # a 3-layer CLIP small enough for unit tests to run in milliseconds
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}


@pytest.fixture
def tiny_cfg():
    import copy
    return copy.deepcopy(TINY_CFG)


@pytest.fixture
def tiny_model(tiny_cfg):
    from edgeclip.models import create_model
    return create_model(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def reference_teacher():
    from edgeclip.models import REFERENCE_TEACHER, load_teacher
    if not (REFERENCE_TEACHER / "model.safetensors").is_file():
        pytest.skip("the reference teacher checkpoint is not in this checkout")
    return load_teacher("reference")


@pytest.fixture(scope="session")
def photos_dir():
    if not (PHOTOS / "manifest.csv").is_file():
        pytest.skip(f"real photos not found at {PHOTOS} (../shared/data/imagenet-sample-200)")
    return PHOTOS
