"""Parity needs no outside photos: labelled held-out ShapesWorld scenes join whatever photos are given, enough
of them that a single disagreement cannot flip a gate (16 synthetic images did: 93.75% < 95%)."""
import pytest

from edgeclip.export import GATES, Precision, check_parity, export_onnx
from edgeclip.export.parity import SHAPES_PARITY_SCENES, parity_images


def test_scenes_are_labelled_held_out_evaluation_images():
    images, labels = parity_images(None, 32)
    assert len(images) == SHAPES_PARITY_SCENES >= 200 and all(labels)
    assert len(set(labels)) == 64 and images[0].size == (32, 32)  # every colour-shape class of the zeroshot split


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8_DYNAMIC])
def test_one_disagreement_cannot_flip_a_gate(precision):
    step = 100 / SHAPES_PARITY_SCENES  # what one image changes in top-1 agreement or zero-shot accuracy (pt)
    for metric, op, bound in GATES[precision]:
        if metric == "top1_agreement":
            assert 100 - step >= bound
        if metric == "zero_shot_delta":
            assert step <= bound


def test_check_parity_without_photos_reads_scenes_and_their_classes(tmp_path, tiny_model):
    export_onnx(tiny_model, tmp_path / "a")
    r = check_parity(tmp_path / "a", tiny_model, "fp32")
    ret = r.metrics["retrieval"]
    assert r.passed and r.images == SHAPES_PARITY_SCENES
    assert ret["zero_shot_images"] == SHAPES_PARITY_SCENES and ret["class_prompts"] == 64
    assert ret["zero_shot_delta"] == 0.0 and ret["top1_agreement"] == 100.0
