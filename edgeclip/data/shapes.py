"""ShapesWorld: a procedural, deterministic image-caption benchmark that needs no files.

Every sample is a pure function of ``(split, index)``: the same index always renders the same pixels and
caption. Scenes hold 1-3 coloured shapes with a size and a position on a textured background. A fixed set of
colour-shape combinations (``HELD_OUT``) never appears in a training scene or caption, so zero-shot accuracy on
them measures compositional generalisation rather than memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35), "green": (40, 185, 60), "blue": (45, 85, 235), "yellow": (240, 225, 40),
    "purple": (145, 50, 205), "orange": (250, 140, 20), "pink": (250, 135, 205), "cyan": (40, 215, 225),
}
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "crescent")
SIZES: dict[str, int] = {"small": 9, "large": 14}  # object side in pixels at image_size=32
COLOUR_NAMES = tuple(COLOURS)
# Each colour and each shape is held out exactly twice (a Latin-square pattern): 16 of 64 combinations.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    (COLOUR_NAMES[c], SHAPE_NAMES[(c + k) % len(SHAPE_NAMES)]) for c in range(len(COLOUR_NAMES)) for k in (0, 3)
)
CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES)
SEEN_CLASSES = tuple(k for k in CLASSES if k not in HELD_OUT)
HELD_OUT_CLASSES = tuple(k for k in CLASSES if k in HELD_OUT)
ZERO_SHOT_TEMPLATE = "a photo of a {colour} {shape}"
SPLIT_SEEDS = {"train": 0, "zeroshot": 1, "retrieval": 2, "val": 3}
_SLOTS = {1: ("in the middle",), 2: ("on the left", "on the right"),
          3: ("on the left", "in the middle", "on the right")}


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str
    position: str


def _shape_mask(shape: str, n: int) -> np.ndarray:
    """Boolean n x n mask, rendered 4x supersampled then thresholded (cheap: built once per size)."""
    ss = 4 * n
    y, x = (np.mgrid[0:ss, 0:ss] + 0.5) / ss * 2 - 1  # [-1, 1]
    r, a = np.hypot(x, y), np.arctan2(y, x)
    if shape == "circle":
        m = r <= 0.95
    elif shape == "square":
        m = (abs(x) <= 0.8) & (abs(y) <= 0.8)
    elif shape == "triangle":
        m = (y <= 0.85) & (abs(x) <= (y + 0.85) / 1.7 * 0.95)
    elif shape == "diamond":
        m = abs(x) + abs(y) <= 0.97
    elif shape == "star":
        m = r <= 0.42 + 0.55 * np.clip(np.cos(5 * (a + np.pi / 2)), 0, 1) ** 2
    elif shape == "cross":
        m = ((abs(x) <= 0.3) | (abs(y) <= 0.3)) & (abs(x) <= 0.95) & (abs(y) <= 0.95)
    elif shape == "ring":
        m = (r <= 0.95) & (r >= 0.55)
    elif shape == "crescent":
        m = (r <= 0.95) & (np.hypot(x - 0.45, y + 0.15) >= 0.75)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.reshape(n, 4, n, 4).mean(axis=(1, 3)) >= 0.5


@lru_cache(maxsize=None)
def _masks(image_size: int) -> dict[tuple[str, str], np.ndarray]:
    scale = image_size / 32
    return {(s, z): _shape_mask(s, max(5, round(px * scale))) for s in SHAPE_NAMES for z, px in SIZES.items()}


def sample_scene(rng: np.random.Generator, n_objects: int, allow_held_out: bool) -> list[Obj]:
    """Random objects placed left to right; held-out combinations only when ``allow_held_out``."""
    pool = CLASSES if allow_held_out else SEEN_CLASSES
    picks = rng.choice(len(pool), size=n_objects)
    sizes = rng.choice(list(SIZES), size=n_objects)
    return [Obj(pool[p][0], pool[p][1], str(z), pos) for p, z, pos in zip(picks, sizes, _SLOTS[n_objects])]


def render(objs: list[Obj], rng: np.random.Generator, image_size: int = 32) -> np.ndarray:
    """Render objects onto a noisy, optionally striped grey background. Returns uint8 [H, W, 3]."""
    h = w = image_size
    base = rng.uniform(20, 110)
    img = base + rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    if rng.random() < 0.3:  # texture: faint stripes
        img = img + 12 * (np.arange(w)[None, :, None] // max(2, image_size // 8) % 2)
    img = np.repeat(img, 3, axis=2)
    masks = _masks(image_size)
    for i, o in enumerate(objs):
        m = masks[(o.shape, o.size)]
        n = m.shape[0]
        slot_w = w / len(objs)
        cx = (i + 0.5) * slot_w + rng.uniform(-0.15, 0.15) * slot_w
        cy = h / 2 + rng.uniform(-0.25, 0.25) * h
        x0 = int(np.clip(round(cx - n / 2), 0, w - n))
        y0 = int(np.clip(round(cy - n / 2), 0, h - n))
        colour = np.asarray(COLOURS[o.colour], np.float32) * rng.uniform(0.85, 1.05)
        img[y0:y0 + n, x0:x0 + n][m] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def _describe(o: Obj, with_size: bool) -> str:
    return f"a {o.size + ' ' if with_size else ''}{o.colour} {o.shape}"


def caption(objs: list[Obj], rng: np.random.Generator, style: str = "random") -> str:
    """A caption for a scene. ``style='full'`` is deterministic in content (all attributes, positions)."""
    if style == "full":
        parts = [f"a {o.size} {o.colour} {o.shape}" + (f" {o.position}" if len(objs) > 1 else "") for o in objs]
        return _join(parts)
    u = rng.random()
    if len(objs) == 1 and u < 0.3:  # single object, short forms incl. the zero-shot template
        o = objs[0]
        forms = (f"a photo of a {o.colour} {o.shape}", f"a {o.colour} {o.shape}", f"a {o.size} {o.colour} {o.shape}",
                 f"a {o.colour} {o.shape} on a grey background")
        return forms[rng.integers(len(forms))]
    if u < 0.45:  # partial attributes teach colour and shape as separate factors
        o = objs[rng.integers(len(objs))]
        forms = (f"something {o.colour}", f"a {o.shape}", f"a {o.colour} object", f"a {o.size} {o.shape}")
        return forms[rng.integers(len(forms))]
    with_size, with_pos = rng.random() < 0.6, rng.random() < 0.6 and len(objs) > 1
    parts = [_describe(o, with_size) + (f" {o.position}" if with_pos else "") for o in objs]
    return _join(parts)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass(frozen=True)
class ShapesWorld:
    """Index-addressable ShapesWorld split. ``split`` is one of train / zeroshot / retrieval / val.

    - ``train``: 1-3 objects, seen combinations only, varied captions (an endless stream: any index works).
    - ``zeroshot``: one object, all 64 combinations in turn (label = class index into ``CLASSES``).
    - ``retrieval`` / ``val``: 1-2 objects, seen and held-out combinations, full captions.
    """

    split: str = "train"
    image_size: int = 32

    def __post_init__(self):
        if self.split not in SPLIT_SEEDS:
            raise ValueError(f"unknown ShapesWorld split {self.split!r}; choose from {sorted(SPLIT_SEEDS)}")

    def sample(self, index: int) -> tuple[np.ndarray, str, int]:
        """Returns (uint8 image [H, W, 3], caption, label); label is -1 outside the zeroshot split."""
        rng = np.random.default_rng((SPLIT_SEEDS[self.split], index))
        if self.split == "zeroshot":
            colour, shape = CLASSES[index % len(CLASSES)]
            objs = [Obj(colour, shape, str(rng.choice(list(SIZES))), "in the middle")]
            return render(objs, rng, self.image_size), ZERO_SHOT_TEMPLATE.format(colour=colour, shape=shape), \
                index % len(CLASSES)
        if self.split == "train":
            objs = sample_scene(rng, int(rng.integers(1, 4)), allow_held_out=False)
            return render(objs, rng, self.image_size), caption(objs, rng), -1
        objs = sample_scene(rng, int(rng.integers(1, 3)), allow_held_out=True)
        return render(objs, rng, self.image_size), caption(objs, rng, style="full"), -1

    def batch(self, start: int, n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Samples ``start .. start+n-1`` stacked: uint8 [n, H, W, 3], captions, labels [n]."""
        items = [self.sample(i) for i in range(start, start + n)]
        return np.stack([x[0] for x in items]), [x[1] for x in items], np.array([x[2] for x in items])


def class_prompts(template: str = ZERO_SHOT_TEMPLATE) -> list[str]:
    """One prompt per class in ``CLASSES`` order."""
    return [template.format(colour=c, shape=s) for c, s in CLASSES]


def is_held_out(label: int) -> bool:
    return CLASSES[label] in HELD_OUT
