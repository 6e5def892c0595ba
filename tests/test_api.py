"""The public API: one page (docs/api.md, between the api markers) that agrees with ``edgeclip.__all__``, consistent
names and return types, lazy top-level entries that never import torch."""
import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgeclip

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- api:start -->", "<!-- api:end -->"
ENTRY = re.compile(r"^\| `edgeclip\.(\w+)(?:\(([^`]*)\))?` \|")


def _page(path: Path) -> dict[str, str | None]:
    """``{name: signature text or None}`` from the table between the markers."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index(START) + len(START):text.index(END)]
    rows = [ENTRY.match(line) for line in body.splitlines() if line.startswith("| `edgeclip.")]
    assert all(rows), "every row of the API table starts with | `edgeclip.NAME(...)` |"
    names = [m.group(1) for m in rows]
    assert len(names) == len(set(names)), "a name is listed twice"
    return {m.group(1): m.group(2) for m in rows}


def _documented_params(sig: str) -> tuple[list[tuple[str, object]], bool]:
    """``'a, b="x", ...'`` -> ([("a", EMPTY), ("b", "x")], True): parameter names, literal defaults, and whether
    the page elides more optional parameters."""
    more = sig.rstrip().endswith("...")
    sig = re.sub(r",?\s*\.\.\.\s*$", "", sig)
    fn = ast.parse(f"def f({sig}): pass").body[0].args
    params = fn.args + fn.kwonlyargs + ([fn.kwarg] if fn.kwarg else [])
    defaults = [inspect.Parameter.empty] * (len(fn.args) - len(fn.defaults)) + [ast.literal_eval(d) for d in fn.defaults]
    defaults += [inspect.Parameter.empty if d is None else ast.literal_eval(d) for d in fn.kw_defaults]
    defaults += [inspect.Parameter.empty] if fn.kwarg else []
    return [(p.arg, d) for p, d in zip(params, defaults)], more


def _check_page(path: Path) -> None:
    page = _page(path)
    assert set(page) == set(edgeclip.__all__), (f"only on the page: {sorted(set(page) - set(edgeclip.__all__))}; "
                                                f"only in __all__: {sorted(set(edgeclip.__all__) - set(page))}")
    for name, sig in page.items():
        obj = getattr(edgeclip, name)
        if sig is None:
            assert not callable(obj), f"{name} is callable: write its signature on the page"
            continue
        assert callable(obj) and not inspect.ismodule(obj), f"edgeclip.{name} is not a function"
        real = list(inspect.signature(obj).parameters.values())
        shown, more = _documented_params(sig)
        names = [p.name for p in real]
        it = iter(names)
        assert all(n in it for n, _ in shown), f"{name}: page parameters {[n for n, _ in shown]} are not, in " \
                                               f"order, among {names}"
        real_by_name = {p.name: p for p in real}
        for n, default in shown:
            assert real_by_name[n].default == default, f"{name}({n}=...): page says {default!r}, code says " \
                                                       f"{real_by_name[n].default!r}"
        required = [p.name for p in real if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert set(required) <= {n for n, _ in shown}, f"{name}: a required parameter is missing from the page"
        assert more or len(shown) == len(real), f"{name}: the page omits parameters; end the signature with ..."


def test_api_page_agrees_with_all():
    path = ROOT / "docs" / "api.md"
    assert START in path.read_text(encoding="utf-8"), f"docs/api.md lost its {START} ... {END} API table"
    _check_page(path)


def test_page_check_catches_a_wrong_default_and_a_missing_name(tmp_path):
    good = ROOT / "docs" / "api.md"
    text = good.read_text(encoding="utf-8")
    bad = tmp_path / "bad.md"
    bad.write_text(text.replace('load_student(path, device="cpu")', 'load_student(path, device="cuda")'))
    with pytest.raises(AssertionError, match="cuda"):
        _check_page(bad)
    bad.write_text("\n".join(l for l in text.splitlines() if "`edgeclip.check_parity(" not in l))
    with pytest.raises(AssertionError, match="check_parity"):
        _check_page(bad)


def test_every_public_name_resolves_and_none_is_a_module():
    import types
    for name in edgeclip.__all__:
        assert not isinstance(getattr(edgeclip, name), types.ModuleType), name
    assert callable(edgeclip.evaluate_model) and callable(edgeclip.export_artifact)
    assert edgeclip.load_runtime is edgeclip.runtime.load


def test_loaders_return_models_and_preprocess_matches_open_clip(tmp_path, tiny_model):
    import open_clip
    import torch
    from PIL import Image
    out = edgeclip.save_student(tiny_model, out=tmp_path / "s")
    student, teacher = edgeclip.load_student(out), edgeclip.load_teacher(out)
    assert isinstance(student, torch.nn.Module) and type(student) is type(teacher)
    img = Image.new("RGB", (50, 40), (200, 30, 10))
    _, _, oc_pre = open_clip.create_model_and_transforms(f"local-dir:{out}")
    assert torch.equal(edgeclip.get_preprocess(student)(img), oc_pre(img))


def test_import_edgeclip_and_the_runtime_entry_need_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgeclip, edgeclip.runtime\n"
            "assert edgeclip.load_runtime is edgeclip.runtime.load\n"
            "try:\n    edgeclip.load_student\nexcept ModuleNotFoundError as e:\n    print('needs', e.name)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "needs torch"  # the training names fail only when touched, and name torch


def test_edgeclip_configs_are_registered_with_open_clip():
    import open_clip
    edgeclip.create_model("TinyCLIP-ViT-8M-16-Text-3M")
    assert "TinyCLIP-ViT-8M-16-Text-3M" in open_clip.list_models()
