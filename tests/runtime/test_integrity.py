"""Artifact integrity on load: sha256 of every file a variant reads, paths kept inside the folder, failed-parity
variants refused, and an Index bound to the artifact that built it."""
import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

import edgeclip.runtime as rt
from edgeclip.errors import ConfigError, IntegrityError, ParityError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny fp32 artifact plus the ORT-optimised variant, which reads the fp32 graph's ``.onnx.data``."""
    from conftest import TINY_CFG, rehash
    from edgeclip.artifact.manifest import read_manifest
    from edgeclip.export import export_onnx
    from edgeclip.export.variants import build_variants
    from edgeclip.models import create_model
    out = tmp_path_factory.mktemp("integrity") / "art"
    export_onnx(create_model(TINY_CFG, seed=0), out)
    rehash(out, variants={**read_manifest(out).variants, **build_variants(out, ["fp32-opt"])})
    return out


@pytest.fixture
def art(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "art")
    return tmp_path / "art"


def _flip(path, offset: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(min(offset, os.path.getsize(path) - 1))
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x5A]))


def _manifest(art) -> dict:
    return json.loads((art / "manifest.json").read_text())


def _write_manifest(art, m: dict) -> None:
    (art / "manifest.json").write_text(json.dumps(m))


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("name,variant", [("image_encoder.onnx.data", "fp32"), ("text_encoder.onnx", "fp32"),
                                          ("image_encoder.onnx.data", "fp32-opt"), ("preprocess.json", "fp32"),
                                          ("bpe_simple_vocab_16e6.txt.gz", "fp32"), ("tokenizer.json", "fp32")])
def test_altered_file_is_refused_on_load(art, name, variant, robust):
    rt.load(art, variant)
    p = art / name
    if name.endswith(".json"):
        p.write_text(p.read_text().replace("\n", " \n", 1))  # same meaning, other bytes
    elif name.endswith(".gz"):
        import gzip
        p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()), compresslevel=1, mtime=0))  # same vocabulary
    else:
        _flip(art / name)
    with pytest.raises(IntegrityError) as e:
        rt.load(art, variant)
    msg = _one_line(e)
    assert name in msg and "verify=False" in msg
    robust("artifact integrity", f"one byte of {name} changed after export, load variant {variant}",
           "IntegrityError in one line naming the file", msg)
    assert rt.load(art, variant, verify=False).variant == variant  # the escape hatch still opens it


def test_file_without_a_recorded_hash_is_refused(art):
    m = _manifest(art)
    del m["files"]["text_encoder.onnx.data"]
    _write_manifest(art, m)
    with pytest.raises(IntegrityError, match="text_encoder.onnx.data has no sha256"):
        rt.load(art)
    rt.load(art, verify=False)


def _outside_copy(art) -> str:
    """A valid copy of the image graph (and its weights) next to the artifact folder, i.e. outside it."""
    for n in ("image_encoder.onnx", "image_encoder.onnx.data"):
        shutil.copy(art / n, art.parent / n)
    return str(art.parent / "image_encoder.onnx")


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_variant_path_outside_the_folder_is_refused(art, how, robust):
    outside = _outside_copy(art)
    m = _manifest(art)
    if how == "dotdot":
        m["variants"]["fp32"]["image"] = "../image_encoder.onnx"
    elif how == "absolute":
        m["variants"]["fp32"]["image"] = outside
    else:
        (art / "link.onnx").symlink_to(outside)
        m["variants"]["fp32"]["image"] = "link.onnx"
        m["files"]["link.onnx"] = m["files"]["image_encoder.onnx"]
    _write_manifest(art, m)
    with pytest.raises(IntegrityError) as e:
        rt.load(art, verify=False)  # refused even when hashes are not checked
    msg = _one_line(e)
    assert "outside the artifact folder" in msg
    robust("artifact integrity", f"variant image path outside the folder ({how})", "IntegrityError in one line", msg)


def test_vocab_path_outside_the_folder_is_refused(art):
    shutil.copy(art / "bpe_simple_vocab_16e6.txt.gz", art.parent / "v.gz")
    tok = json.loads((art / "tokenizer.json").read_text())
    tok["vocab_file"] = "../v.gz"
    (art / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(IntegrityError, match="outside the artifact folder"):
        rt.load(art, verify=False)


def test_failed_parity_variant_is_refused_unless_allowed(art, robust):
    from conftest import rehash
    from edgeclip.artifact import Verdict
    rehash(art, parity={"fp32": Verdict(True), "fp32-opt": Verdict(False, ["text.min_cosine 0.98 < 0.99999"])})
    assert rt.load(art, "fp32").parity == "passed"
    with pytest.raises(ParityError) as e:
        rt.load(art, "fp32-opt")
    msg = _one_line(e)
    assert "fp32-opt" in msg and "text.min_cosine" in msg and "allow_failed_parity=True" in msg
    assert rt.load(art, "fp32-opt", allow_failed_parity=True).parity == "failed"
    robust("artifact integrity", "load a variant whose parity gates failed at export",
           "ParityError in one line (allow_failed_parity=True loads it)", msg)


def test_variant_without_parity_record_loads_as_unchecked(art):
    assert _manifest(art)["parity"] == {}  # export_onnx alone runs no gates
    assert rt.load(art, "fp32-opt").parity == "unchecked"


def test_verification_cost_is_small(art, robust):
    """Hashing is the default, so it must cost little next to opening the sessions."""
    from edgeclip.artifact import read_manifest
    from edgeclip.runtime.integrity import check_artifact
    m = read_manifest(art)
    best = {}
    for verify in (False, True):
        best[verify] = min(_timed(lambda: check_artifact(art, m, "fp32", verify=verify)) for _ in range(3))
    files = check_artifact(art, m, "fp32")
    assert set(files.verified) == {"tokenizer.json", "preprocess.json", "image_encoder.onnx", "text_encoder.onnx",
                                   "image_encoder.onnx.data", "text_encoder.onnx.data", "bpe_simple_vocab_16e6.txt.gz"}
    mb = sum((art / n).stat().st_size for n in files.verified) / 2**20
    ms_per_mb = (best[True] - best[False]) * 1e3 / mb
    assert ms_per_mb < 25, ms_per_mb  # sha256 runs at ~2 ms/MB; 25 leaves room for a loaded machine
    robust("artifact integrity", "cost of verifying sha256 on load (tiny artifact)", "a few ms per MB",
           f"{ms_per_mb:.2f} ms/MB over {mb:.1f} MB")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_index_refuses_a_runtime_of_another_artifact(art, tmp_path, robust):
    from conftest import rehash
    r = rt.load(art)
    imgs = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (30, 50), (0, 0, 255))]
    rt.Index.build(r, imgs, ["red", "blue"]).save(tmp_path / "idx")
    idx = rt.Index.load(tmp_path / "idx")
    assert idx.artifact == r.fingerprint and idx.variant == "fp32"
    assert len(idx.search_text(rt.load(art, "fp32-opt"), "red", k=2)[0]) == 2  # another variant of the same export
    other = tmp_path / "other"  # the same architecture with other weights: only the .onnx.data differs
    shutil.copytree(art, other)
    _flip(other / "text_encoder.onnx.data")
    rehash(other)
    with pytest.raises(ConfigError) as e:
        idx.search_text(rt.load(other), "red", k=2)
    msg = _one_line(e)
    assert "rebuild it" in msg and idx.artifact in msg
    robust("artifact integrity", "search a saved Index with a runtime of another artifact",
           "ConfigError in one line", msg)


def test_export_hashes_every_file_including_onnx_data(pristine):
    from edgeclip.artifact.manifest import hash_and_refs
    m = _manifest(pristine)
    on_disk = {p.name for p in pristine.iterdir() if p.is_file() and p.name != "manifest.json"}
    assert set(m["files"]) == on_disk
    for name, digest in m["files"].items():
        assert hash_and_refs(pristine / name)[0] == digest, name
    assert hash_and_refs(pristine / "image_encoder.fp32-opt.onnx")[1] == ["image_encoder.onnx.data"]
    assert np.all([len(v) == 64 for v in m["files"].values()])


@pytest.mark.parametrize("fmt,words", [("edgeclip-artifact/3", "upgrade edgeclip"),
                                       ("edgeclip-artifact/0", "re-export it with 'edgeclip export"),
                                       ("someone-else/1", "not an edgeclip artifact")])
def test_manifest_of_an_unknown_format_version_is_refused_in_one_line(art, fmt, words, robust):
    """The schema version lives in edgeclip.artifact.manifest; one it does not read is refused before any file is
    opened, by the runtime and by bench (the manifest's one reader, whoever calls it)."""
    from edgeclip.artifact import read_manifest
    from edgeclip.runtime.bench import bench
    m = _manifest(art)
    assert m["format"] == "edgeclip-artifact/2"  # what export writes today
    _write_manifest(art, {**m, "format": fmt})
    for call in (lambda: rt.load(art), lambda: bench(art), lambda: read_manifest(art)):
        with pytest.raises(ConfigError) as e:
            call()
        assert words in _one_line(e) and fmt in str(e.value)
    robust("artifact integrity", f"manifest format {fmt!r}", "one line (load, bench, read_manifest: ConfigError), "
           "nothing opened", _one_line(e))


def test_manifest_written_by_the_previous_release_still_loads(art):
    """Schema 1 (edgeclip <= 0.3: packed variant names, an optional "target") is read as records."""
    from edgeclip.artifact import read_manifest
    m = _manifest(art)
    v1 = {**m, "format": "edgeclip-artifact/1",
          "variants": {n: {"image": e["image"], "text": e["text"]} for n, e in m["variants"].items()}}
    _write_manifest(art, v1)
    rec = read_manifest(art).variants["fp32-opt"]
    assert (rec.format, rec.precision, rec.recipe, rec.gate) == ("onnx", "fp32", "opt", "fp32-opt")
    assert rt.load(art, "fp32-opt").embed_texts(["a dog"]).shape == (1, 32)


@pytest.mark.parametrize("case", ["unknown format", "malformed variant"])
def test_manifest_with_an_unknown_format_name_is_refused_in_one_line(art, case, robust):
    from edgeclip.artifact import read_manifest
    m = _manifest(art)
    if case == "unknown format":
        m["variants"]["fp32"]["format"] = "hologram"
        words = "unknown format 'hologram'"
    else:
        m["variants"]["fp32"] = {"format": "onnx"}
        words = "needs format, precision, image and text"
    _write_manifest(art, m)
    for call in (lambda: rt.load(art), lambda: read_manifest(art)):
        with pytest.raises(ConfigError) as e:
            call()
        assert words in _one_line(e)
    robust("artifact integrity", f"manifest: {case}", "ConfigError in one line", _one_line(e))
