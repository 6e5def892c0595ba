"""Augmented views with a fixed seed per (sample, view), so the teacher's embedding of a view is computed once
and cached (MobileCLIP's reinforced data): view 0 is the plain image, views 1..K-1 a random-resized crop and a
random horizontal flip (torchvision's own transforms, seeded from the sample key and the view number)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..limits import VIEWS
from .keys import stable_hash

CROP_SCALE = (0.5, 1.0)  # of the image area: ShapesWorld's 32 px scenes lose whole objects below ~half


def check_views(views: int, gpu_decode: bool = False) -> int:
    """1..64 views; views are made from decoded PIL images, so not with ``--decode gpu``."""
    VIEWS.check(views)
    if gpu_decode and views > 1:
        raise ConfigError("augmented views are made on the CPU: use --decode cpu with --views > 1")
    return views


def view_key(key: str, view: int) -> str:
    """The cache/store key of a view (view 0 keeps the sample's own key, so K=1 is the unaugmented run)."""
    return key if view == 0 else f"{key}#view{view}"


def make_view(img: Image.Image, key: str, view: int) -> Image.Image:
    """View ``view`` of the image of sample ``key``: the same pixels every time it is asked for."""
    if view == 0:
        return img
    from torchvision.transforms import v2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stable_hash(view_key(key, view)))
        crop = v2.RandomResizedCrop((img.height, img.width), scale=CROP_SCALE, antialias=True)
        return v2.RandomHorizontalFlip()(crop(img))


def views_for_step(seed: int, step: int, n: int, views: int) -> np.ndarray:
    """Which view each of a step's ``n`` rows trains on (a pure function of seed and step: resume is exact)."""
    if views == 1:
        return np.zeros(n, dtype=np.int64)
    return np.random.default_rng((seed, step, 0x5EED)).integers(views, size=n)


def view_for_stream(seed: int, epoch: int, key: str, views: int) -> int:
    """The view of a streamed sample in ``epoch`` (streams have no step -> rows map)."""
    return 0 if views == 1 else stable_hash(f"{seed}:{epoch}:{key}") % views
