"""Tree-wide contracts: stage order of imports, no unpickling of user files, light ``import edgeclip``."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# data flows one way; a module may import only from its own stage or earlier ones
ORDER = ["errors", "_io", "models", "data", "evaluate", "inherit", "distill", "runtime", "export", "commands", "cli"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "edgeclip" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else None


def _files():
    for base, pkg in ((ROOT / "edgeclip", "edgeclip"), (ROOT / "export", "edgeclip.export")):
        for p in base.rglob("*.py"):
            rel = p.relative_to(base).with_suffix("")
            yield p, ".".join([pkg, *rel.parts]).removesuffix(".__init__")


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text())
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module or ""


def test_no_backward_imports():
    bad = []
    for path, module in _files():
        own = _stage(module)
        if own is None:
            continue
        for imp in _imports(path, module):
            dep = _stage(imp)
            if dep and ORDER.index(dep) > ORDER.index(own):
                bad.append(f"{module} imports {imp}")
    assert not bad, bad


def test_runtime_imports_nothing_heavy():
    for p in (ROOT / "edgeclip" / "runtime").glob("*.py"):
        src = p.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|open_clip|torchvision)\b", src, re.M), p


def test_never_unpickle_user_files(robust):
    offenders = []
    files = list((ROOT / "edgeclip").rglob("*.py")) + list((ROOT / "export").rglob("*.py")) + \
        list((ROOT / "apps").rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py"))
    for p in files:
        src = p.read_text()
        if re.search(r"^\s*import pickle|pickle\.loads?\(", src, re.M):
            offenders.append(f"{p}: pickle")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", src):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{p}: {m.group(0)}")
        if re.search(r"allow_pickle=True", src):
            offenders.append(f"{p}: allow_pickle=True")
    robust("security", "grep the tree for pickle / torch.load without weights_only / allow_pickle",
           "none", f"{len(files)} files scanned, offenders: {offenders or 'none'}")
    assert not offenders, offenders


def test_import_edgeclip_is_light():
    code = "import sys, edgeclip; assert 'torch' not in sys.modules and 'open_clip' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
