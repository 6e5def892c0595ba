"""One image-folder convention for `edgeclip eval`, parity photos, calibration and the demo."""
import pytest
from PIL import Image

from conftest import one_error_line
from edgeclip.errors import ConfigError, DataError
from edgeclip.evaluate import evaluate_model
from edgeclip.data.folders import folder_items, rename_classes
from edgeclip.export.parity import load_photos


def _png(path, colour=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), colour).save(path)
    return path


def _class_folder(d):
    for cls, colour in (("n01", (255, 0, 0)), ("n02", (0, 0, 255))):
        for i in range(2):
            _png(d / cls / f"{i}.png", colour)
    _png(d / "loose.png")  # directly in the folder: no class
    (d / "n02" / "broken.png").write_bytes(b"not a png")
    return d


def test_sub_folders_are_classes_and_loose_files_have_none(tmp_path):
    d = _class_folder(tmp_path / "photos")
    rows = folder_items(d)
    assert [(p.relative_to(d).as_posix(), lab) for p, lab in rows] == [
        ("loose.png", None), ("n01/0.png", "n01"), ("n01/1.png", "n01"), ("n02/0.png", "n02"),
        ("n02/1.png", "n02"), ("n02/broken.png", "n02")]
    assert [lab for _, lab in folder_items(d, limit=2, labelled_only=True)] == ["n01", "n01"]
    (tmp_path / "names.txt").write_text("tench\ngoldfish\n")
    assert {lab for _, lab in rename_classes(rows, tmp_path / "names.txt")} == {None, "tench", "goldfish"}
    (tmp_path / "names.txt").write_text("tench\n")
    with pytest.raises(DataError, match="1 names for 2 classes"):
        rename_classes(rows, tmp_path / "names.txt")


@pytest.mark.parametrize("header,row", [("filepath,wnid,class_name", "{f},n01,red square"),  # ImageNet sample
                                        ("\ufefffile,label", "{f},red square"),  # Excel's UTF-8 byte-order mark
                                        ("image,caption", "{f},red square")])
def test_manifest_lists_the_images_and_their_labels(tmp_path, header, row):
    d = tmp_path / "photos"
    _png(d / "images" / "a.png")
    _png(d / "images" / "unlisted.png")  # not in the manifest: not an item
    (d / "manifest.csv").write_text(f"{header}\n{row.format(f='images/a.png')}\n{row.format(f='gone.png')}\n",
                                    encoding="utf-8")
    assert [(p.relative_to(d).as_posix(), lab) for p, lab in folder_items(d)] == [
        ("images/a.png", "red square"), ("gone.png", "red square")]
    (d / "manifest.csv").write_text("wnid,class_name\nn01,tench\n")
    with pytest.raises(ConfigError, match="has no image column; name one of filepath, file"):
        folder_items(d)


def test_eval_and_parity_read_a_folder_alike(tmp_path, tiny_model):
    d = _class_folder(tmp_path / "photos")
    res = evaluate_model(tiny_model, d)
    assert res["zero_shot"]["n"] == 4 and res["skipped"] == 1  # loose.png has no class; broken.png is counted
    imgs, labels = load_photos(d, 64)
    assert len(imgs) == 5 and labels == [None, "n01", "n01", "n02", "n02"]  # parity keeps unlabelled photos
    assert len(load_photos(d, 2)[0]) == 2 and load_photos(None) == ([], [])


def test_folder_without_labels_is_one_error_line(tmp_path, tiny_model, capsys):
    from edgeclip.cli import main
    from edgeclip.models import save_student
    d = tmp_path / "flat"
    _png(d / "a.png")
    student = save_student(tiny_model, out=tmp_path / "student")
    code = main(["eval", str(student), "--data", str(d)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert one_error_line(code, err) and "no labelled images" in err[0], err
    (d / "cls").mkdir()
    (d / "cls" / "broken.png").write_bytes(b"not a png")
    code = main(["eval", str(student), "--data", str(d)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert one_error_line(code, err) and "no readable labelled images" in err[0] and "'corrupt image': 1" in err[0]
    with pytest.raises(ConfigError, match="not found"):
        load_photos(tmp_path / "nowhere")


def test_eval_json_records_its_prompts_so_another_client_reproduces_top1(tmp_path, tiny_model):
    """From the JSON alone (prompts, class names) and the images, open_clip gets the same top-1."""
    import json

    import numpy as np
    import torch
    from open_clip import get_tokenizer as oc_tokenizer
    from edgeclip.cli import main
    from edgeclip.models import save_student
    from edgeclip.models.io import image_transform, preprocess_cfg
    d = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for cls in ("dog", "cat", "ship"):
        for i in range(4):
            _png(d / cls / f"{i}.png", tuple(int(v) for v in rng.integers(0, 255, 3)))
    student = save_student(tiny_model, out=tmp_path / "student")
    assert main(["eval", str(student), "--data", str(d), "--out", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    p = res["zero_shot_prompts"]
    assert p["class_names"] == ["cat", "dog", "ship"] and p["templates"] == ["a photo of a {}."]
    assert p["prompts"] == [p["templates"][0].format(c) for c in p["class_names"]]
    tf = image_transform(preprocess_cfg(tiny_model))
    files = sorted(d.glob("*/*.png"))
    with torch.no_grad():
        img = tiny_model.encode_image(torch.stack([tf(Image.open(f).convert("RGB")) for f in files]), normalize=True)
        txt = tiny_model.encode_text(oc_tokenizer("ViT-B-32", context_length=16)(p["prompts"]), normalize=True)
    top1 = float(((img @ txt.T).argmax(1).numpy() == [p["class_names"].index(f.parent.name) for f in files]).mean())
    assert abs(100 * top1 - res["zero_shot"]["top1"]) < 1e-6, (top1, res["zero_shot"])
    shapes = evaluate_model(tiny_model, "shapes")["zero_shot_prompts"]
    assert len(shapes["class_names"]) == len(shapes["prompts"]) and "{colour}" in shapes["templates"][0]
