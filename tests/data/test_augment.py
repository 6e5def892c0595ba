"""Augmented views: the same pixels for the same (sample, view), view 0 the plain image, and one teacher
embedding per view in the cache (the teacher runs once per view, whatever the epoch or stage)."""
import numpy as np
import torch
from PIL import Image

from edgeclip.data.augment import make_view, view_for_stream, view_key, views_for_step
from edgeclip.data.loader import Batches
from edgeclip.data.pairs import ShapesPairs
from edgeclip.distill import TeacherCache
from edgeclip.models import create_model, get_tokenizer
from edgeclip.models.io import default_preprocess_cfg, image_transform
from conftest import TINY_CFG


def _img(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_a_view_is_a_pure_function_of_sample_and_view_number():
    img = _img()
    assert make_view(img, "shapes:7", 0) is img  # view 0: the plain image
    a = np.asarray(make_view(img, "shapes:7", 3))
    torch.manual_seed(123)  # the global RNG state must not matter ...
    b = np.asarray(make_view(img, "shapes:7", 3))
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)
    state = torch.get_rng_state()
    make_view(img, "shapes:7", 2)
    assert torch.equal(state, torch.get_rng_state())  # ... and a view leaves it untouched
    others = [np.asarray(make_view(img, k, v)) for k, v in (("shapes:7", 2), ("shapes:8", 3))]
    assert all(not np.array_equal(a, o) for o in others)  # other views / samples differ
    assert view_key("shapes:7", 0) == "shapes:7" and view_key("shapes:7", 3) == "shapes:7#view3"


def test_views_per_step_are_seeded_and_cover_every_view():
    v = views_for_step(0, 5, 256, 4)
    assert np.array_equal(v, views_for_step(0, 5, 256, 4)) and set(v.tolist()) == {0, 1, 2, 3}
    assert not np.array_equal(v, views_for_step(0, 6, 256, 4))
    assert not views_for_step(0, 5, 64, 1).any()
    assert view_for_stream(0, 1, "k", 4) == view_for_stream(0, 1, "k", 4) < 4


def test_the_teacher_embeds_each_view_once_across_epochs():
    teacher = create_model(TINY_CFG, seed=0)
    tok = get_tokenizer(teacher)
    n, views = 16, 2
    b = Batches(ShapesPairs(n, 32), 8, 0, image_transform(default_preprocess_cfg(TINY_CFG)), tok, tok, views=views)
    cache, keys = TeacherCache(), set()
    for step in range(12):  # 6 epochs of 2 steps: far more rows than (sample, view) pairs
        k, px, t_ids, _ = b(step)
        keys |= set(k)
        cache.get(teacher, k, px, t_ids)
    assert any("#view1" in k for k in keys) and len(keys) <= n * views
    assert cache.misses == len(keys) and cache.hits == 12 * 8 - len(keys)
    again = b(3)  # a step re-made later (a resume, a DataLoader worker) has the same pixels and keys
    b2 = Batches(ShapesPairs(n, 32), 8, 0, image_transform(default_preprocess_cfg(TINY_CFG)), tok, tok, views=views)
    k2, px2, _, _ = b2(3)
    assert k2 == again[0] and torch.equal(px2, again[1])
