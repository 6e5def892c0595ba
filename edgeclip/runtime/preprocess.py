"""Image preprocessing with PIL + numpy, matching open_clip's eval transform (resize shortest side, centre crop,
normalise) as recorded in an artifact's ``preprocess.json``."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..imageio import to_rgb

_INTERP = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}

# What a key missing from ``preprocess.json`` means: open_clip's eval defaults (its 224-px input, OpenAI mean/std,
# bicubic, shortest-side resize). Written here, not imported from ``edgeclip.models``, because the runtime must
# import without torch; ``tests/models/test_towers.py`` holds them equal to ``edgeclip.models``' defaults.
DEFAULTS = {"size": 224, "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711),
            "interpolation": "bicubic", "resize_mode": "shortest"}


class Preprocess:
    """An artifact's ``preprocess.json`` as a PIL + numpy transform (keys it lacks take ``DEFAULTS``)."""

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)  # as recorded in the artifact (parity compares it with the model's own)
        c = {**DEFAULTS, **cfg}
        self.size = c["size"] if isinstance(c["size"], int) else int(c["size"][0])
        self.mean = np.asarray(c["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(c["std"], np.float32).reshape(3, 1, 1)
        self.interp = _INTERP[c["interpolation"]]
        if c["resize_mode"] != "shortest":
            raise ValueError(f"unsupported resize_mode {c['resize_mode']!r}; edgeclip runtime does 'shortest'")

    def __call__(self, img: Image.Image) -> np.ndarray:
        """PIL image (any mode; see ``edgeclip.imageio.to_rgb``) --> float32 [3, size, size]."""
        img = to_rgb(img)
        w, h = img.size
        s = self.size
        if (w, h) != (s, s):  # torchvision Resize(int): shortest side to s, long side truncated
            if w <= h:
                nw, nh = s, int(s * h / w)
            else:
                nw, nh = int(s * w / h), s
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), self.interp)
            w, h = img.size
            left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
            img = img.crop((left, top, left + s, top + s))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (x - self.mean) / self.std

    def batch(self, images) -> np.ndarray:
        return np.stack([self(i) for i in images]).astype(np.float32)
