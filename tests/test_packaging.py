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
    """Module-level imports of edgeclip.runtime: stdlib or base dependencies. Imports inside a function (an optional
    backend or tool) must come from a declared extra, so the missing piece can be named ([openvino], [bench])."""
    import ast
    import sys
    dist = {"pil": "pillow", "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert"}
    base = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    for p in (ROOT / "edgeclip" / "runtime").glob("*.py"):
        tree = ast.parse(p.read_text())
        lazy = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module != "__future__":
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                pkg = dist.get(top.lower(), top.lower())
                if top in sys.stdlib_module_names or pkg in base:
                    continue
                assert id(node) in lazy and pkg in extras, f"{p.name}:{node.lineno} imports {top} " + (
                    "at module level (not a base dependency)" if id(node) not in lazy else "(in no extra)")


def test_version_has_one_source(project):
    import edgeclip
    assert "version" not in project and project["dynamic"] == ["version"]
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["dynamic"]["version"] == {"attr": "edgeclip.__version__"} and edgeclip.__version__


def test_every_package_folder_is_in_the_wheel():
    """A sub-package missing from ``packages`` would be left out of the wheel (setuptools lists, not finds, them)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for pkg, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in rel and not any((ROOT / folder / Path(*rel[:i + 1])).is_symlink()
                                                    for i in range(len(rel))):
                found.add(".".join([pkg, *rel]))
    assert {"edgeclip.evaluate", "edgeclip.commands", "edgeclip.export.trt", "edgeclip.apps.demo"} <= found
    assert found <= set(cfg["packages"]), sorted(found - set(cfg["packages"]))


def test_reference_teacher_is_not_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    assert not any("assets" in pattern for patterns in data.values() for pattern in patterns)


def test_missing_reference_teacher_says_where_it_ships(tmp_path, monkeypatch):
    from edgeclip.errors import ConfigError
    from edgeclip.models import io
    monkeypatch.setattr(io, "REFERENCE_TEACHER", tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"source checkout only.*pip install -e .*reference_teacher"):
        io.load_teacher("reference")
