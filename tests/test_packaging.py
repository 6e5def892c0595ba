"""Packaging: the base install is the torch-free runtime, training needs ``[train]``, the 33 MB reference teacher
stays out of the wheel and is asked for clearly. (``.ci/torch_free`` installs the wheel in a torch-free venv.)"""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ONLY = {"torch", "torchvision", "open-clip-torch", "timm", "onnx", "onnxscript", "safetensors", "huggingface-hub"}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_base_dependencies_are_the_runtime_and_torch_is_in_train(project):
    base = {_name(r) for r in project["dependencies"]}
    assert {"onnxruntime", "numpy", "pillow", "regex", "ftfy"} <= base
    assert not base & TRAIN_ONLY, base & TRAIN_ONLY
    assert TRAIN_ONLY <= {_name(r) for r in project["optional-dependencies"]["train"]}


def test_every_runtime_import_is_a_base_dependency(project):
    base = {_name(r) for r in project["dependencies"]} | {"pil"}
    stdlib = {"__future__", "json", "time", "dataclasses", "pathlib", "gzip", "html", "functools"}
    for p in (ROOT / "edgeclip" / "runtime").glob("*.py"):
        for m in re.finditer(r"^\s*(?:import|from)\s+(\w+)", p.read_text(), re.M):
            top = m.group(1).lower()
            assert top in stdlib or top in base or top == "onnxruntime", f"{p.name} imports {top}"


def test_version_has_one_source(project):
    import edgeclip
    assert "version" not in project and project["dynamic"] == ["version"]
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["dynamic"]["version"] == {"attr": "edgeclip.__version__"} and edgeclip.__version__


def test_reference_teacher_is_not_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    assert not any("assets" in pattern for patterns in data.values() for pattern in patterns)


def test_missing_reference_teacher_says_where_it_ships(tmp_path, monkeypatch):
    from edgeclip.errors import ConfigError
    from edgeclip.models import io
    monkeypatch.setattr(io, "REFERENCE_TEACHER", tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"source checkout only.*pip install -e .*reference_teacher"):
        io.load_teacher("reference")
