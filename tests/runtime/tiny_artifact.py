"""A tiny exported artifact (fp32 + int8-dynamic, parity verdicts in its manifest), built once per test process."""
from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest


@functools.lru_cache(maxsize=1)
def build():
    """(artifact folder, the tiny torch model it came from). Tests copy it before changing its manifest."""
    from conftest import TINY_CFG
    from edgeclip.export import export_artifact
    from edgeclip.models import create_model
    model = create_model(TINY_CFG, seed=0)
    art = Path(tempfile.mkdtemp(prefix="edgeclip-tiny-")) / "artifact"
    export_artifact(model, art, ["fp32", "int8-dynamic"])
    return art, model


def copy_to(dst: Path) -> Path:
    shutil.copytree(build()[0], dst)
    return dst


@pytest.fixture(name="tiny_artifact")
def tiny_artifact_fixture():
    """(artifact folder, model), built once per process and shared: tests that change it use ``artifact_copy``."""
    return build()


@pytest.fixture
def artifact_copy(tmp_path):
    return copy_to(tmp_path / "artifact")
