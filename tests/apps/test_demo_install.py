"""``edgeclip demo`` from an installed wheel: the demo ships inside the wheel as ``edgeclip.apps.demo`` (the repo
keeps its top-level ``apps/`` folder), and a missing piece is named in one true error line."""
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo(*prelude: str, args=("demo", "--artifact", "no-such-artifact"), env=None):
    """Run ``edgeclip ARGS`` after ``prelude`` statements: (exit code, stderr lines)."""
    code = "; ".join(["import sys", *prelude, "from edgeclip.cli import main", f"sys.exit(main({list(args)!r}))"])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    return r.returncode, r.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of the tree (no dev symlinks), as pip builds it for a user."""
    if importlib.util.find_spec("setuptools") is None:  # setuptools >= 70.1 builds wheels by itself
        pytest.skip("setuptools is needed to build the wheel offline (pip wheel --no-build-isolation)")
    d = tmp_path_factory.mktemp("wheel")
    src = d / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("edgeclip", "export", "apps"):
        shutil.copytree(ROOT / name, src / name, ignore=lambda p, names: [
            n for n in skip(p, names) | set(names) if n in skip(p, names) or (Path(p) / n).is_symlink()])
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(d / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return next((d / "dist").glob("edgeclip-*.whl"))


@pytest.mark.slow
def test_the_wheel_carries_the_demo_app(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"edgeclip/apps/__init__.py", "edgeclip/apps/demo/__init__.py", "edgeclip/apps/demo/app.py",
            "edgeclip/export/__init__.py", "edgeclip/cli.py"} <= names
    assert not [n for n in names if n.startswith("apps/")]  # no top-level 'apps' package in site-packages


@pytest.mark.slow
def test_demo_runs_from_the_unpacked_wheel(wheel, tmp_path, robust):
    """Only the wheel's files on the path: the demo module imports, and the command gets as far as the artifact."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code, err = _demo(env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site"), "HOME": str(tmp_path)})
    robust("bad requests", "edgeclip demo from the installed wheel, no artifact at --artifact",
           "the demo app is found; one line naming the missing artifact", f"exit {code}: {err[-1] if err else ''}")
    assert code == 2 and len(err) == 1 and "no exported artifact at 'no-such-artifact'" in err[0]


@pytest.mark.parametrize("missing, says", [
    ("gradio", "the demo needs gradio, which is not installed: pip install 'edgeclip[demo]'"),
    ("edgeclip.apps", "this edgeclip install has no demo app (edgeclip.apps"),
])
def test_a_missing_piece_is_named_in_one_line(missing, says, robust):
    code, err = _demo(f"sys.modules[{missing!r}] = None")  # what the import system does for an absent module
    robust("bad requests", f"edgeclip demo without {missing}", "one line naming what is missing, exit 2",
           f"exit {code}: {err[-1] if err else ''}")
    assert code == 2 and len(err) == 1 and says in err[0]


def test_the_demo_command_builds_the_quickstart_student_only_for_the_default_artifact(tmp_path, monkeypatch):
    """The decision lives in the command (not in the app): default artifact missing -> quickstart, then serve."""
    pytest.importorskip("gradio")
    import edgeclip.apps.demo.app as app
    from edgeclip.commands import demo as commands
    from edgeclip.cli import parse_args
    from edgeclip.errors import ConfigError
    calls = []
    monkeypatch.chdir(tmp_path)  # no runs/quickstart/artifact here
    monkeypatch.setattr(commands, "_cmd_quickstart", lambda a: calls.append((a.command, a.out)))
    monkeypatch.setattr(app, "serve", lambda *a, **k: calls.append(("serve", a[0], a[3])))
    args = parse_args(["demo"])
    assert args.func(args) == 0
    assert calls == [("quickstart", "runs/quickstart"), ("serve", "runs/quickstart/artifact", "127.0.0.1")]
    calls.clear()
    with pytest.raises(ConfigError, match="no exported artifact at 'elsewhere'"):
        args = parse_args(["demo", "--artifact", "elsewhere"])
        args.func(args)
    assert calls == []  # another missing artifact is an error, never a 10-minute quickstart
