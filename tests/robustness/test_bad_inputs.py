"""Bad models and bad requests: each is one clear line (exit 2 on the CLI), nothing written, nothing unpickled."""
import shutil
from types import SimpleNamespace

import pytest

from conftest import TINY_CFG, one_error_line, run_cli
from edgeclip.errors import BackendError, ConfigError
from edgeclip.models import create_model, load_teacher, save_student


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny student folder and its exported artifact, shared by the cases below (each copies what it breaks)."""
    from edgeclip.export import export_artifact
    d = tmp_path_factory.mktemp("bad")
    model = create_model(TINY_CFG, seed=0)
    save_student(model, d / "student")
    export_artifact(model, d / "artifact")
    return d, TINY_CFG


@pytest.mark.slow
def test_truncated_safetensors(folders, tmp_path, robust):
    src, _ = folders
    shutil.copytree(src / "student", tmp_path / "s")
    w = tmp_path / "s" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    code, err = run_cli("export", tmp_path / "s", "--onnx", "--out", tmp_path / "out")
    robust("bad models", "truncated model.safetensors", "one error line, exit 2, nothing written",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_checkpoint_for_another_architecture(folders, tmp_path, robust):
    src, cfg = folders
    shutil.copytree(src / "student", tmp_path / "s")
    other = dict(cfg, vision_cfg=dict(cfg["vision_cfg"], width=32))
    save_student(create_model(other), tmp_path / "o")
    shutil.copy(tmp_path / "o" / "model.safetensors", tmp_path / "s" / "model.safetensors")
    code, err = run_cli("export", tmp_path / "s", "--onnx", "--out", tmp_path / "out")
    robust("bad models", "weights of another architecture under a config", "one error line naming the tensor",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and not (tmp_path / "out").exists()


def test_pickle_is_refused_and_never_unpickled(tmp_path, robust):
    import pickle
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # unpickling this would create the marker file
            return (open, (str(marker), "w"))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ConfigError) as e:
        load_teacher("TinyCLIP-ViT-8M-16-Text-3M", pretrained=str(tmp_path / "evil.pt"))
    robust("bad models", "a pickle whose unpickling runs code (passed as weights)",
           "refused with one line; the code never runs", f"{type(e.value).__name__}: {str(e.value)[:160]}; "
           f"payload ran: {marker.exists()}")
    assert not marker.exists() and "\n" not in str(e.value)


@pytest.mark.slow
def test_onnx_with_wrong_inputs(folders, tmp_path, robust):
    import onnx
    from onnx import TensorProto, helper

    from edgeclip.runtime import load
    src, _ = folders
    shutil.copytree(src / "artifact", tmp_path / "a")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "a" / "image_encoder.onnx")
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "a", verify=False)  # unverified: the hash check would refuse the swapped file first
    robust("bad models", "an ONNX file with other inputs in an artifact", "one clear error before inference",
           f"{type(e.value).__name__}: {e.value}")
    assert "pixel_values" in str(e.value)


@pytest.mark.slow
def test_corrupt_artifact_manifest(folders, tmp_path, robust):
    src, _ = folders
    shutil.copytree(src / "artifact", tmp_path / "a")
    (tmp_path / "a" / "manifest.json").write_text("{not json")
    code, err = run_cli("parity", tmp_path / "a", "--against", src / "student")
    robust("bad models", "artifact with a corrupt manifest.json", "one error line, exit 2",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err)


def test_tensorrt_engine_from_another_version(tmp_path, monkeypatch, robust):
    from edgeclip.export.trt import run as trt
    monkeypatch.setattr(trt, "import_tensorrt", lambda: SimpleNamespace(__version__="11.0.0"))
    monkeypatch.setattr(trt, "gpu_capability", lambda: "9.0")
    (tmp_path / "image_encoder.fp16.plan").write_bytes(b"engine bytes")
    with pytest.raises(BackendError) as e:
        trt.EngineRunner(tmp_path / "image_encoder.fp16.plan", {"tensorrt": "10.8.0", "compute_capability": "9.0"})
    robust("bad models", "TensorRT engine built by another TensorRT version (library faked: not installable here)",
           "refused before deserializing, says to rebuild", f"{type(e.value).__name__}: {e.value}")
    assert "rebuild" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("target, case, expected", [
    ("1234", "infeasible budget (1,234 params)", "one line naming the nearest feasible sizes"),
    ("10M", "target >= teacher", "one line: not below the teacher"),
    ("abc", "budget that is not a number", "one line: cannot parse"),
])
def test_bad_budgets(folders, tmp_path, robust, target, case, expected):
    src, _ = folders
    code, err = run_cli("compress", src / "student", "--target", target, "--out", tmp_path / "run")
    robust("bad requests", case, expected + ", exit 2, nothing written", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bad_stage_count(folders, tmp_path, robust):
    src, _ = folders
    code, err = run_cli("compress", src / "student", "--target", '{"image": 60000, "text": 60000}', "--stages", "0",
                    "--out", tmp_path / "run")
    robust("bad requests", "a stage plan that cannot exist (--stages 0)", "one error line, exit 2",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_parity_against_a_mismatched_model(folders, tmp_path, robust):
    src, cfg = folders
    save_student(create_model(dict(cfg, embed_dim=16)), tmp_path / "arch")
    save_student(create_model(cfg, seed=7), tmp_path / "weights")
    code_a, err_a = run_cli("parity", src / "artifact", "--against", tmp_path / "arch")
    code_w, err_w = run_cli("parity", src / "artifact", "--against", tmp_path / "weights")
    robust("bad requests", "parity against a model of another architecture", "one error line, exit 2",
           f"exit {code_a}: {err_a[-1] if err_a else ''}")
    robust("bad requests", "parity against the same architecture with other weights",
           "gates fail loudly, exit 2, naming the failed gates", f"exit {code_w}: {(err_w[-1] if err_w else '')[:200]}")
    assert one_error_line(code_a, err_a) and "another architecture" in err_a[0]
    assert one_error_line(code_w, err_w) and "parity gates failed" in err_w[0]



def _parse_error(argv, capsys) -> tuple[int, list[str]]:
    """The CLI's argument checks, in process (they run before anything is imported, loaded or written)."""
    from edgeclip.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    return e.value.code, [ln for ln in err.splitlines() if "error" in ln.lower() or "Traceback" in ln]


@pytest.mark.parametrize("flags, case", [
    (["--target", '{"image": 2M}'], "--target '{\"image\": 2M}' (unquoted size in JSON)"),
    (["--target", '{"image": NaN}'], "--target '{\"image\": NaN}'"),
    (["--target", "nan%"], "--target nan%"), (["--target", "inf%"], "--target inf%"), (["--target", "%"], "--target %"),
    (["--target", "25%%"], "--target 25%%"), (["--target", "0"], "--target 0"), (["--target=-5M"], "--target=-5M"),
    (["--target", "8M", "--lr=-1e-3"], "--lr=-1e-3"), (["--target", "8M", "--lr", "nan"], "--lr nan"),
    (["--target", "8M", "--batch-size", "-4"], "--batch-size -4"),
    (["--target", "8M", "--batch-size", "1"], "--batch-size 1 (trained nothing: loss 0 every step)"),
    (["--target", "8M", "--steps", "0"], "--steps 0 (trained one step)"),
    (["--target", "8M", "--steps", "-5"], "--steps -5 (trained one step)"),
    (["--target", "8M", "--epochs", "nan"], "--epochs nan"),
    (["--target", "8M", "--data", "shapes:abc"], "--data shapes:abc"),
    (["--target", "8M", "--data", "shapes:-5"], "--data shapes:-5"),
])
def test_bad_compress_arguments(tmp_path, capsys, robust, flags, case):
    code, err = _parse_error(["compress", "reference", *flags, "--out", str(tmp_path / "run")], capsys)
    robust("bad requests", case, "one error line, exit 2, before anything is loaded or written",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and not (tmp_path / "run").exists()


def _poisoned(src, tmp_path, key: str, index) -> str:
    import torch
    from safetensors.torch import load_file, save_file
    shutil.copytree(src / "student", tmp_path / "s")
    w = tmp_path / "s" / "model.safetensors"
    sd = load_file(str(w))
    with torch.no_grad():
        sd[key][index] = float("nan")
    save_file(sd, str(w))
    return tmp_path / "s"


@pytest.mark.slow
def test_nan_teacher_is_refused(folders, tmp_path, robust):
    src, _ = folders
    s = _poisoned(src, tmp_path, "visual.conv1.weight", (0, 0, 0, 0))
    code, err = run_cli("compress", s, "--target", '{"image": 60000, "text": 60000}', "--out", tmp_path / "run")
    robust("bad models", "teacher with one NaN in visual.conv1.weight (gave an all-NaN student, exit 0)",
           "one error line naming the file and tensor, exit 2, nothing written",
           f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "'visual.conv1.weight' (1 NaN)" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_nan_token_embedding_row_is_refused_at_export(folders, tmp_path, robust):
    src, _ = folders
    s = _poisoned(src, tmp_path, "token_embedding.weight", 31337)
    code, err = run_cli("export", s, "--onnx", "--out", tmp_path / "out")
    robust("bad models", "NaN in one token-embedding row (passed every parity gate)",
           "one error line naming the tensor, exit 2, nothing written", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "token_embedding.weight" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_config_edited_after_saving_is_refused(folders, tmp_path, robust):
    import json
    src, _ = folders
    shutil.copytree(src / "student", tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "open_clip_config.json").read_text())
    meta["model_cfg"]["text_cfg"]["heads"] = 8  # same shapes: scored 11 instead of 48 R@1, silently
    (tmp_path / "s" / "open_clip_config.json").write_text(json.dumps(meta))
    code, err = run_cli("export", tmp_path / "s", "--onnx", "--out", tmp_path / "out")
    robust("bad models", "student config edited after saving (text heads 4 -> 8: shapes unchanged)",
           "one error line (config fingerprint), exit 2", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "no longer matches" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_after_changing_the_target(folders, tmp_path, robust):
    from edgeclip.distill import compress
    src, _ = folders
    compress(str(src / "student"), {"image": 60_000, "text": 60_000}, data="shapes:16", steps=2, batch_size=8,
             stages=1, out=tmp_path / "run", evaluate=False)
    code, err = run_cli("compress", src / "student", "--target", '{"image": 40000, "text": 40000}', "--data",
                        "shapes:16", "--steps", "2", "--batch-size", "8", "--stages", "1", "--resume",
                        "--out", tmp_path / "run")
    robust("bad requests", "--resume after changing --target (133 lines of size mismatches)",
           "one error line, exit 2", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "cannot resume" in err[0]


@pytest.mark.slow
def test_one_row_dataset(folders, tmp_path, robust):
    src, _ = folders
    (tmp_path / "a.png").write_bytes(_png())
    (tmp_path / "one.csv").write_text("filepath,title\na.png,a red circle\n")
    code, err = run_cli("compress", src / "student", "--target", '{"image": 60000, "text": 60000}', "--data",
                        tmp_path / "one.csv", "--out", tmp_path / "run")
    robust("bad requests", "one-row dataset with batch 128 (trained nothing: loss 0 every step)",
           "one error line, exit 2, nothing written", f"exit {code}: {err[-1] if err else ''}")
    assert one_error_line(code, err) and "at least 2" in err[0] and not (tmp_path / "run").exists()


def _png() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()
