"""The TensorRT path without TensorRT (it cannot be installed here): the pure build plan, the one-line errors when
the library or a GPU is missing, and build_engine driven against a stand-in ``tensorrt`` module that records the
calls (names from the documented Python API), so the per-version choices and the files written are checked."""
import subprocess
import sys
from types import SimpleNamespace

import pytest

from edgeclip.errors import BackendError, ExportError
from edgeclip.export.trt import build_engine, plan_build, require_tensorrt
from edgeclip.export.trt import run as available  # the checks live beside the engine runner


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


def _no_tensorrt():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass


@pytest.mark.slow
def test_without_tensorrt_one_clear_error(tmp_path):
    _no_tensorrt()
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        build_engine(tmp_path / "x.onnx", tmp_path / "x.plan", "pixel_values", (1, 3, 32, 32))
    r = subprocess.run([sys.executable, "-m", "edgeclip.cli", "export", "reference", "--trt", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "TensorRT" in r.stderr
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_broken_tensorrt_install_is_named_as_broken(tmp_path, monkeypatch):
    """An installed TensorRT whose CUDA library is missing is not reported as 'not installed'."""
    _no_tensorrt()
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.10: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(BackendError) as e:
        require_tensorrt()
    assert "installed but does not import" in str(e.value) and "libnvinfer.so.10" in str(e.value)


def test_without_a_gpu_one_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(BackendError, match="needs an NVIDIA GPU"):
        available.gpu_capability()


def test_readiness_names_a_wrong_input_and_a_static_batch(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeclip.export.trt import trt_readiness
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])  # batch fixed at 2
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    r = trt_readiness(tmp_path / "m.onnx", "pixel_values")
    assert not r["ok"] and r["inputs"] == ["x"]
    assert r["problems"][:2] == ["no graph input named 'pixel_values' (inputs: ['x'])", "x dim 0 is static"]
    assert trt_readiness(tmp_path / "m.onnx", "x")["problems"][0] == "x dim 0 is static"


class _Recorder:
    """Stand-in for the objects of the ``tensorrt`` API that build_engine touches; every call is recorded."""

    def __init__(self, log, name, parse_ok=True):
        self.log, self.name, self.parse_ok, self.num_errors = log, name, parse_ok, 0 if parse_ok else 1

    def __getattr__(self, attr):
        def call(*args, **kwargs):
            self.log.append((f"{self.name}.{attr}", args, kwargs))
            if attr == "parse_from_file":
                return self.parse_ok
            if attr == "get_error":
                return "unsupported op Foo"
            if attr == "build_serialized_network":
                return b"ENGINE"
            if attr in ("create_timing_cache", "get_timing_cache"):
                return SimpleNamespace(serialize=lambda: b"CACHE")
            return _Recorder(self.log, attr, self.parse_ok)
        return call


def _fake_tensorrt(version: str, log: list, parse_ok=True) -> SimpleNamespace:
    enum = SimpleNamespace
    return SimpleNamespace(
        __version__=version, Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=lambda logger: _Recorder(log, "builder", parse_ok),
        OnnxParser=lambda network, logger: _Recorder(log, "parser", parse_ok),
        NetworkDefinitionCreationFlag=enum(STRONGLY_TYPED=1), MemoryPoolType=enum(WORKSPACE="WORKSPACE"),
        BuilderFlag=enum(FP16="FP16", INT8="INT8"))


@pytest.mark.parametrize("version, network_flags, flags", [("10.9.0.34", 0, ["FP16"]), ("11.4.0.106", 2, [])])
def test_build_engine_asks_each_version_for_its_own_mode(tmp_path, monkeypatch, version, network_flags, flags):
    log = []
    monkeypatch.setattr(available, "import_tensorrt", lambda: _fake_tensorrt(version, log))
    monkeypatch.setattr(available, "gpu_capability", lambda: "9.0")
    (tmp_path / "cache.timing.cache").write_bytes(b"EARLIER")
    facts = build_engine(tmp_path / "image.onnx", tmp_path / "cache.plan", "pixel_values", (1, 3, 32, 32), "fp16")
    calls = {name: args for name, args, _ in log}
    assert calls["builder.create_network"] == (network_flags,)
    assert [a[0] for n, a, _ in log if n == "create_builder_config.set_flag"] == flags
    assert calls["create_optimization_profile.set_shape"] == ("pixel_values", (1, 3, 32, 32), (8, 3, 32, 32),
                                                              (64, 3, 32, 32))
    assert calls["create_builder_config.create_timing_cache"] == (b"EARLIER",)  # the persisted cache is reused
    assert (tmp_path / "cache.plan").read_bytes() == b"ENGINE" and not (tmp_path / "cache.plan.tmp").exists()
    assert (tmp_path / "cache.timing.cache").read_bytes() == b"CACHE"
    assert facts["tensorrt"] == version and facts["compute_capability"] == "9.0"
    assert facts["strongly_typed"] is (version.startswith("11"))


def test_build_engine_names_the_parser_errors_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(available, "import_tensorrt", lambda: _fake_tensorrt("10.9", [], parse_ok=False))
    monkeypatch.setattr(available, "gpu_capability", lambda: "9.0")
    with pytest.raises(ExportError, match="could not parse image.onnx: unsupported op Foo"):
        build_engine(tmp_path / "image.onnx", tmp_path / "e.plan", "pixel_values", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


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


class _OrtEngine:
    """Stands in for EngineRunner: runs the ONNX file named as the 'engine' with onnxruntime."""

    def __init__(self, engine_path, expected=None):
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(engine_path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.input: x})[0]


def test_export_with_trt_runs_the_engine_branch_and_its_parity(tmp_path, monkeypatch, tiny_model):
    """export_artifact(trt=True) end to end with TensorRT stood in for: the source graph per tower comes from the
    manifest, the engines' facts land in the manifest, and TrtRuntime serves parity's compare() through the same
    interface as the onnxruntime runtime (the stand-in engines are the fp32 ONNX files, so the gates must pass)."""
    import json

    import sys

    import edgeclip.runtime as rt
    from edgeclip.export import export_artifact
    built = []

    def fake_build(src, engine_path, name, shape, precision):
        built.append((src.name, engine_path.name, name, shape, precision))
        return {"tensorrt": "10.9.0", "compute_capability": "9.0", "precision": precision, "engine": src.name}
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr("edgeclip.export.trt.build_engine", fake_build)
    monkeypatch.setattr(available, "EngineRunner", _OrtEngine)
    res = export_artifact(tiny_model, tmp_path / "a", trt=True, trt_precision="fp32")
    assert built == [("image_encoder.onnx", "image_encoder.fp32.plan", "pixel_values", (1, 3, 32, 32), "fp32"),
                     ("text_encoder.onnx", "text_encoder.fp32.plan", "input_ids", (1, 16), "fp32")]
    manifest = json.loads((res.out / "manifest.json").read_text())
    rec = manifest["variants"]["tensorrt-fp32"]
    assert rec["format"] == "tensorrt" and rec["engines"]["image"]["engine"] == "image_encoder.onnx"
    assert rec["tensorrt"] == "10.9.0" and rec["compute_capability"] == "9.0"
    assert [r.variant for r in res.parity] == ["fp32", "tensorrt-fp32"] and res.passed, [r.failed for r in res.parity]
    assert rt.load(res.out, "tensorrt-fp32").backend == "tensorrt"  # the same session interface as every runtime
    monkeypatch.delitem(sys.modules, "tensorrt")
    with pytest.raises(BackendError, match=r"tensorrt runtime needs tensorrt \(pip install 'edgeclip\[trt\]'\)"):
        rt.load(res.out, "tensorrt-fp32")  # one line where TensorRT is missing
