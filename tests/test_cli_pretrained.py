"""open_clip's ``--model NAME --pretrained FILE`` wherever the CLI takes a model, and its --csv-* flags."""
import json

import pytest
from PIL import Image

from edgeclip.cli import parse_args
from tests.conftest import one_error_line, run_cli

NAME = "TinyCLIP-ViT-8M-16-Text-3M"


@pytest.mark.parametrize("argv, attr", [
    (["compress", NAME, "--target", "4M", "--pretrained", "w.pt"], "pretrained"),
    (["eval", NAME, "--pretrained", "w.pt", "--teacher", NAME, "--teacher-pretrained", "t.pt"], "teacher_pretrained"),
    (["export", NAME, "--onnx", "--out", "a", "--pretrained", "w.pt"], "pretrained"),
    (["parity", "a", "--against", NAME, "--pretrained", "w.pt"], "pretrained"),
    (["demo", "--teacher", NAME, "--teacher-pretrained", "w.pt"], "teacher_pretrained"),
])
def test_every_model_taking_command_has_pretrained(argv, attr):
    assert getattr(parse_args(argv), attr).endswith(".pt")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import warnings

    from safetensors.torch import save_file

    from edgeclip.models import load_teacher
    d = tmp_path_factory.mktemp("w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = load_teacher(NAME)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(d / "w.safetensors"))
    save_file({"visual.proj": m.visual.proj[:3].contiguous()}, str(d / "bad.safetensors"))
    for i, c in enumerate([(250, 0, 0), (0, 250, 0)]):
        Image.new("RGB", (40, 30), c).save(d / f"{i}.png")
    (d / "coco.csv").write_text("image;caption\n0.png;red\n0.png;a red thing\n1.png;green\n1.png;a green thing\n")
    return d


@pytest.mark.slow
def test_eval_takes_pretrained_file_and_csv_flags(weights):
    out = weights / "r.json"
    code, err = run_cli("eval", NAME, "--pretrained", weights / "w.safetensors", "--data", weights / "coco.csv",
                        "--csv-separator", ";", "--csv-img-key", "image", "--csv-caption-key", "caption", "--out", out)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["images"] == 2 and res["captions"] == 4 and "i2t_R@1" in res["retrieval"]
    code, err = run_cli("eval", NAME, "--pretrained", weights / "bad.safetensors", "--data", weights / "coco.csv")
    assert one_error_line(code, err) and "does not match" in err[0]  # the file was read, not ignored
