import subprocess
import sys

import pytest

from edgeclip.errors import BackendError, ExportError
from edgeclip.export.tensorrt_engine import build_engine, plan_build


def test_trt10_uses_builder_flags():
    p = plan_build("10.9.0.34", "fp16", (1, 3, 224, 224))
    assert p.builder_flags == ("FP16",) and not p.strongly_typed and p.onnx_variant == "fp32"
    assert p.profile == ((1, 3, 224, 224), (8, 3, 224, 224), (64, 3, 224, 224))
    assert plan_build("10.0", "int8", (1, 77)).builder_flags == ("INT8", "FP16")


def test_trt11_is_strongly_typed_without_flags():
    p = plan_build("11.0.0", "fp16", (1, 77))
    assert p.builder_flags == () and p.strongly_typed and p.onnx_variant == "fp16"
    assert plan_build("11.1", "int8", (1, 77)).onnx_variant == "int8-static"


def test_bad_plan_inputs():
    with pytest.raises(ExportError):
        plan_build("10.0", "int4", (1, 77))
    with pytest.raises(ExportError):
        plan_build("10.0", "fp16", (1, 77), min_batch=8, opt_batch=4)


def test_without_tensorrt_one_clear_error(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        build_engine(tmp_path / "x.onnx", tmp_path / "x.plan", "pixel_values", (1, 3, 32, 32))
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "export", "reference", "--trt", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "TensorRT" in r.stderr


@pytest.mark.gpu
def test_engine_parity_on_gpu(tmp_path):
    pytest.importorskip("tensorrt")
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from edgeclip.export import export_artifact
    from edgeclip.models import create_model
    res = export_artifact(create_model("TinyCLIP-ViT-8M-16-Text-3M", seed=0), tmp_path / "a", trt=True)
    assert res.passed
