"""Adding a format is one file plus one registry line (issue #35): a toy format registered from the test (its
exporter and ``register_format`` line live in tests/export/toy_format.py) is exported, gated, loaded and benched
with no other project file edited."""
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def toy(monkeypatch):
    from edgeclip.artifact.formats import FORMATS
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("EDGECLIP_FORMATS", "toy_format")  # the bench's worker processes import it too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    import toy_format  # registers it
    yield toy_format.TOY
    FORMATS.pop("toy", None)  # and gone from the registry after the test
    sys.modules.pop("toy_format", None)


def test_a_toy_format_exports_loads_and_benches_with_no_project_file_edited(toy, tmp_path, tiny_model):
    import edgeclip.runtime as rt
    from edgeclip.artifact import read_manifest
    from edgeclip.export import export_artifact
    from edgeclip.runtime.bench import bench, record
    res = export_artifact(tiny_model, tmp_path / "a", targets=["toy"])
    assert [r.variant for r in res.parity] == ["fp32", "toy-fp32"] and res.passed, [r.failed for r in res.parity]
    m = read_manifest(tmp_path / "a")
    rec = m.variants["toy-fp32"]
    assert (rec.format, rec.precision, rec.recipe, rec.options["toy_note"]) == ("toy", "fp32", "",
                                                                                "a copy of the fp32 graphs")
    assert m.verdict("toy-fp32") == "passed" and rec.image in m.files
    r = rt.load(tmp_path / "a", "toy-fp32")
    assert r.backend == "onnxruntime" and r.parity == "passed"
    assert abs(r.embed_texts(["a red star"]) - rt.load(tmp_path / "a").embed_texts(["a red star"])).max() == 0
    rep = bench(tmp_path / "a", variants=["toy-fp32"], batches=(1,), threads=[1], repeat=1, warmup=0, peaks=False,
                progress=False)
    assert [(row["backend"], row["variant"]) for row in rep["results"]][:1] == [("onnxruntime", "toy-fp32")]
    record(tmp_path / "a", rep)
    assert read_manifest(tmp_path / "a").fastest["by_batch"]["1"][0]["variant"] == "toy-fp32"
    assert rt.load(tmp_path / "a", "auto", backend="onnxruntime").variant == "toy-fp32"


def test_an_unregistered_format_in_a_manifest_is_one_line(toy, tmp_path, tiny_model, monkeypatch):
    """The same artifact read where nobody registered the toy format: one line naming it, nothing opened."""
    import edgeclip.runtime as rt
    from edgeclip.artifact.formats import FORMATS
    from edgeclip.errors import ConfigError
    from edgeclip.export import export_artifact
    export_artifact(tiny_model, tmp_path / "a", targets=["toy"])
    FORMATS.pop("toy")
    monkeypatch.delenv("EDGECLIP_FORMATS")
    with pytest.raises(ConfigError, match="unknown format 'toy'") as e:
        rt.load(tmp_path / "a", "fp32")
    assert "\n" not in str(e.value)
