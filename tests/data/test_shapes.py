import numpy as np

from edgeclip.data.shapes import CLASSES, COLOUR_NAMES, HELD_OUT, SHAPE_NAMES, ShapesWorld, class_prompts


def test_deterministic_per_index():
    a, b = ShapesWorld("train").sample(123), ShapesWorld("train").sample(123)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(ShapesWorld("train").sample(124)[0], a[0])


def test_held_out_combinations_never_in_training():
    held = [f"{c} {s}" for c, s in HELD_OUT]
    for i in range(3000):
        cap = ShapesWorld("train").sample(i)[1]
        assert not any(h in cap for h in held), cap


def test_zero_shot_set_covers_64_classes_and_16_held_out():
    assert len(CLASSES) >= 64 and len(HELD_OUT) == 16 and len(SHAPE_NAMES) >= 8 and len(COLOUR_NAMES) >= 8
    _, caps, labels = ShapesWorld("zeroshot").batch(0, 128)
    assert sorted(set(labels.tolist())) == list(range(64))
    assert caps[5] == class_prompts()[5]


def test_render_speed_floor():
    """Not a timed goal (that is in benchmarks/): a loose floor that catches an accidental 10x slowdown."""
    import time
    t = time.perf_counter()
    ShapesWorld("train").batch(0, 500)
    assert 500 / (time.perf_counter() - t) > 300
