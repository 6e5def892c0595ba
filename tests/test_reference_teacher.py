"""The shipped reference teacher: loads like any teacher, scores far above chance, and inheritance from it pays
off in training (TinyCLIP's claim), even when step-0 numbers do not favour it."""
import pytest

from edgeclip.evaluate import evaluate_shapes
from edgeclip.models import get_tokenizer, model_config

pytestmark = pytest.mark.slow  # distils and evaluates the reference teacher (~65 s)

CHANCE = 100 / 64


def test_reference_teacher_is_far_above_chance(reference_teacher):
    r = evaluate_shapes(reference_teacher, get_tokenizer(reference_teacher), n_zeroshot=512, n_retrieval=200)
    assert r.zero_shot["seen_top1"] > 10 * CHANCE
    assert r.zero_shot["held_out_top1"] > 5 * CHANCE
    assert r.retrieval["i2t_R@1"] > 10 * (100 / 200)


def test_inherited_student_beats_scratch_after_the_same_short_distillation(reference_teacher):
    from edgeclip.data.pairs import ShapesPairs
    from edgeclip.models.io import image_transform, preprocess_cfg
    from edgeclip.distill.losses import affinity_kl
    from edgeclip.data.loader import Batches
    from edgeclip.distill import DistillConfig, TeacherCache, distill
    from edgeclip.evaluate import embed_images, embed_texts, shapes_eval_sets
    from edgeclip.inherit import inherit_weights
    from edgeclip.models.params import student_config
    t = reference_teacher
    cfg = student_config(model_config(t), {"image": "1.39M", "text": "0.48M"})
    pairs, tf, cache = ShapesPairs(1024), image_transform(preprocess_cfg(t)), TeacherCache()
    s = shapes_eval_sets(512, 256)
    t_img, t_txt = embed_images(t, s["ret_images"]), embed_texts(t, get_tokenizer(t), s["ret_captions"])
    kl = {}
    for method in ("manual", "scratch"):
        student, _ = inherit_weights(t, cfg, method=method)
        b = Batches(pairs, 64, 0, tf, get_tokenizer(t), get_tokenizer(student))
        student, _ = distill(student, t, b, DistillConfig(steps=40, batch_size=64, warmup=5), cache=cache)
        tok = get_tokenizer(student)
        kl[method] = affinity_kl(embed_images(student, s["ret_images"]), embed_texts(student, tok, s["ret_captions"]),
                                 t_img, t_txt)
    assert kl["manual"] < kl["scratch"], kl


def test_compress_random_vit_b_32_to_8m_at_224px(tmp_path):
    """A real architecture end to end (random weights): runs, loss falls, the folder loads in open_clip."""
    import json
    import subprocess
    import sys

    from edgeclip.distill import compress
    from edgeclip.models import create_model
    teacher = create_model("ViT-B-32", seed=0)
    compress(teacher, "8M", data="shapes:8", steps=6, batch_size=8, stages=1, out=tmp_path / "run", evaluate=False)
    curve = json.loads((tmp_path / "run" / "report.json").read_text())["stages"][0]["loss_curve"]
    assert curve[-1] < curve[0]
    code = ("import open_clip, torch; m, _, pre = open_clip.create_model_and_transforms("
            f"'local-dir:{tmp_path / 'run' / 'student'}'); assert pre.transforms[0].size == 224;"
            "print(sum(p.numel() for p in m.visual.parameters()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert abs(int(out.stdout.strip()) - 8e6) <= 0.4e6
