"""Safe outputs: which paths edgeclip may replace (``check_output``) and atomic, crash-safe writes (``atomic_path``).

The rule, built once and used by every writer: an output path that exists is replaced only when it is an edgeclip
output of the same kind (its main JSON carries ``"edgeclip_output": KIND``) and the caller said ``overwrite``;
the current folder, home, ``/``, the repo root and any folder containing them are never outputs; an output never
equals, lies inside or contains an input being read. A refusal is one line and touches nothing.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from .artifact import IMAGE_ONNX, MANIFEST
from .errors import ConfigError

__all__ = ["check_output", "output_kind", "one_writer", "atomic_path", "staging_path", "replace_with",
           "drop_own_staging", "write_json", "write_text"]
KEY = "edgeclip_output"
# the JSON that names a folder's kind, in the order they are read; "run" has run.json from its first step on
MAIN_JSON = ("report.json", "run.json", "open_clip_config.json", MANIFEST, "index.json", "bench.json")
# outputs written before the key existed, recognised by the files they always had
LEGACY = {"run": ("report.json", "student"), "student": ("open_clip_config.json", "model.safetensors"),
          "artifact": (MANIFEST, IMAGE_ONNX), "index": ("embeddings.npy", "items.json")}
REPO_ROOT = Path(__file__).resolve().parent.parent
_MAX_JSON = 64 << 20  # a marker JSON is small; never read a huge file just to learn its kind


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_of(entry: Path, prefix: str) -> int | None:
    """The pid a hidden temp or backup entry is named after (``.NAME.tmp-PID-...``); None for another name."""
    pid = entry.name[len(prefix):].split("-")[0]
    return int(pid) if pid.isdigit() else None


def _normal(path: str | os.PathLike) -> Path:
    """Absolute path with ``.``/``..``/``~`` resolved and the parent's symlinks followed (the leaf is kept)."""
    p = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    return p if p.parent == p else p.parent.resolve() / p.name


def _is_within(a: Path, b: Path) -> bool:
    """``a`` equals ``b`` or lies inside it."""
    return a == b or b in a.parents


def _protected(p: Path) -> str | None:
    """Why ``p`` can never be an output folder, or None."""
    real = p.resolve()
    if real.parent == real:
        return "the filesystem root"
    places = [(Path.cwd().resolve(), "the current folder")]
    with contextlib.suppress(RuntimeError, KeyError):
        places.append((Path.home().resolve(), "the home folder"))
    if (REPO_ROOT / "pyproject.toml").is_file():
        places.append((REPO_ROOT, "edgeclip's own source folder"))
    for place, what in places:
        if real == place:
            return what
        if real in place.parents:
            return f"a folder that contains {what} ({place})"
    return None


def _recover(path: Path) -> None:
    """Finish or undo a replace whose writer died between its two renames (its pid is gone).

    Backup missing its output: the writer died after moving the previous output aside: it is put back.
    Backup beside a present output: the new output was renamed in, only the clean-up was lost: it is removed.
    Also handles ``.NAME.tmp-PID-old``, the backup name of edgeclip <= 0.1.0.
    """
    name = glob.escape(path.name)
    backups = [(b, f".{path.name}.old-") for b in path.parent.glob(f".{name}.old-*")]
    backups += [(b, f".{path.name}.tmp-") for b in path.parent.glob(f".{name}.tmp-*-old")]
    for b, prefix in sorted(backups):
        pid = pid_of(b, prefix)
        if pid is None or _alive(pid):
            continue
        if not os.path.lexists(path):
            os.rename(b, path)
        elif b.is_dir() and not b.is_symlink():
            shutil.rmtree(b, ignore_errors=True)
        else:
            b.unlink(missing_ok=True)


def clean_stale(path: Path) -> None:
    """Remove temp folders a killed writer of ``path`` left behind (their pid is gone); backups are recovered."""
    path = _normal(path)
    _recover(path)
    prefix = f".{path.name}.tmp-"
    for d in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = pid_of(d, prefix)
        if pid is not None and not _alive(pid) and not d.name.endswith("-old"):
            shutil.rmtree(d, ignore_errors=True)


def rename(src: Path, dst: Path) -> None:
    """The one rename every atomic write goes through (a test stands in for it to fail between two renames)."""
    os.rename(src, dst)


def replace_with(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` onto ``path``. A folder being replaced goes to ``.NAME.old-PID`` first and is
    deleted only once the new one is in place; an error in between puts it back, and a crash in between leaves
    it for ``_recover`` (run by the next check or write of ``path``) to restore."""
    if not os.path.lexists(path) or not (tmp.is_dir() or (path.is_dir() and not path.is_symlink())):
        os.replace(tmp, path)  # one atomic rename: a file over a file, or anything onto a free name
        return
    backup = path.parent / f".{path.name}.old-{os.getpid()}"
    rename(path, backup)
    try:
        rename(tmp, path)
    except BaseException:
        rename(backup, path)
        raise
    if backup.is_dir() and not backup.is_symlink():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        backup.unlink(missing_ok=True)


def drop_own_staging(path: str | os.PathLike) -> None:
    """Remove this process's temp folders for ``path``: left by an earlier attempt that raised (a long-lived
    process retrying a long write); other processes' folders are ``clean_stale``'s, once their pid is gone."""
    path = _normal(path)
    for d in path.parent.glob(f".{glob.escape(path.name)}.tmp-{os.getpid()}-*"):
        if not d.name.endswith("-old"):
            shutil.rmtree(d, ignore_errors=True)


def staging_path(path: str | os.PathLike) -> Path:
    """A fresh hidden temp path beside ``path`` (``.NAME.tmp-PID-*/NAME``), for ``replace_with`` later.

    Refuses the filesystem root, home, the repo root, the current folder and folders containing them, so no
    writer can ever rename one of those away, whatever path it was handed.
    """
    path = _normal(path)
    why = _protected(path)
    if why:
        raise ConfigError(f"refusing to write {str(path)!r}: it is {why}; choose a new output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)) / path.name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside ``path``; on success move it onto ``path`` (file or folder) with ``replace_with``.

    The temp folder is hidden and named after this process (``.NAME.tmp-PID-*``), so a writer killed with
    SIGKILL leaves nothing that looks like ``path``; the next write of ``path`` removes its leftovers and puts
    back a previous output that a crash left moved aside.
    """
    path = _normal(path)
    tmp = staging_path(path)
    try:
        yield tmp
        replace_with(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _json_kind(p: Path) -> str | None:
    try:
        if not p.is_file() or p.stat().st_size > _MAX_JSON:
            return None
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get(KEY), str):
        return obj[KEY]
    if isinstance(obj, list) and obj and all(isinstance(r, dict) and {"variant", "passed"} <= r.keys() for r in obj):
        return "parity-report"  # legacy `edgeclip parity --report` JSON: a bare list of variant verdicts
    return None


def output_kind(path: str | os.PathLike) -> str | None:
    """The edgeclip output kind at ``path`` ("run", "student", "artifact", "index", "eval-report", ...), or None.

    A folder is known by the ``edgeclip_output`` key of its main JSON, or by the files older edgeclip outputs
    always had; a file by its own key, or (a ``.md`` beside its report) by the key of the ``.json`` of the same
    name. Anything else is the user's.
    """
    p = _normal(path)
    if p.is_dir():
        for name in MAIN_JSON:
            kind = _json_kind(p / name)
            if kind:
                return kind
        for kind, files in LEGACY.items():
            if all((p / f).exists() for f in files):
                return kind
        if any((p / "ckpt").glob("stage*.pt")):
            return "run"  # an interrupted run of edgeclip <= 0.1.0 (only checkpoints so far)
        return None
    if p.is_file():
        if p.suffix == ".json":
            return _json_kind(p)
        sibling = p.with_suffix(".json")
        return _json_kind(sibling) if sibling != p else None
    return None


def _not_written_by_edgeclip(p: Path) -> list[str]:
    """Entries of an artifact folder that its manifest's ``files`` does not list (a user's notes, say); an artifact
    without ``files`` (older than the hashes) cannot tell and gives []."""
    from .artifact.manifest import read_manifest
    from .errors import EdgeClipError
    try:
        files = read_manifest(p).files
    except EdgeClipError:
        return []
    if not files:
        return []
    return sorted(e.name for e in p.iterdir() if e.name not in files and e.name != MANIFEST
                  and not e.name.startswith("."))  # hidden: edgeclip's own locks and staging


def _describe(p: Path) -> str:
    if p.is_dir():
        n = sum(1 for _ in p.iterdir())
        return f"a folder with {n} entr{'y' if n == 1 else 'ies'}"
    return f"a file of {p.stat().st_size:,} bytes" if p.is_file() else "a special file"


def _input_path(x) -> Path | None:
    if x is None or not isinstance(x, (str, os.PathLike)):
        return None
    s = os.fspath(x).removeprefix("local-dir:")
    return Path(os.path.expanduser(s)).resolve() if s and os.path.lexists(os.path.expanduser(s)) else None


def check_output(path: str | os.PathLike, kind: str, overwrite: bool = False, inputs=()) -> Path:
    """Check that ``path`` may receive an edgeclip output of ``kind``; returns the absolute path to write.

    Args:
        path: the output file or folder (``~`` and ``..`` resolved).
        kind: what will be written there ("run", "student", "artifact", "eval-report", "parity-report", ...).
        overwrite: replace an existing output of the same kind (the CLI's ``--overwrite``).
        inputs: paths being read (teacher, model, artifact, data...); non-paths and missing paths are ignored.

    Raises:
        ConfigError: one line naming the path, what it is and the fix; nothing on disk was touched.

    A previous output that a crash left moved aside (see ``replace_with``) is restored first, so the decision
    sees what the user last had. An empty folder may be written over: it holds nothing to lose.
    """
    if not os.fspath(path):
        raise ConfigError(f"the {kind} output path is empty; choose a new output folder")
    p = _normal(path)
    shown = repr(os.fspath(path)) + ("" if str(p) == os.fspath(path) else f" ({p})")
    why = _protected(p)
    if why:
        raise ConfigError(f"refusing to write the {kind} to {shown}: it is {why}; choose a new output folder")
    real = p.resolve()
    for x in inputs:
        src = _input_path(x)
        if src is None:
            continue
        if real == src:
            rel = "is the input being read"
        elif _is_within(real, src):
            rel = "lies inside the input being read"
        elif _is_within(src, real):
            rel = "contains the input being read"
        else:
            continue
        raise ConfigError(f"refusing to write the {kind} to {shown}: it {rel} ({src}); choose another output path")
    if p.parent.is_dir():
        _recover(p)
    if not os.path.lexists(p) or (p.is_dir() and not p.is_symlink() and not any(p.iterdir())):
        return p
    found = output_kind(p)
    if found == kind and overwrite:
        foreign = _not_written_by_edgeclip(p) if kind == "artifact" else []
        if foreign:
            raise ConfigError(f"{shown} is an edgeclip {kind}, but holds {len(foreign)} file(s) its manifest does not "
                              f"list ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); --overwrite "
                              "would delete them: move them out first, or choose another output path")
        return p
    if found == kind:
        raise ConfigError(f"{shown} is an existing edgeclip {kind}; pass --overwrite to replace it, "
                          "or choose another output path")
    if found:
        a = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(f"{shown} is an edgeclip {found}, not {a} {kind}; --overwrite replaces only {a} {kind}: "
                          "choose another output path")
    raise ConfigError(f"{shown} exists and is not an edgeclip output ({_describe(p)}); edgeclip never replaces "
                      "it: choose a new or empty output folder")


_HELD: dict[Path, int] = {}  # outputs this process holds the lock of -> nesting depth
_LOCK_FDS: dict[Path, int] = {}  # and the descriptor that holds each lock


def _forget_locks_in_child() -> None:
    """A forked child (a DataLoader worker) shares the parent's lock descriptors, and an flock lives while any
    copy is open: close the child's copies, so that a writer killed with -9 frees its output at once, not when
    its workers notice and exit."""
    for fd in _LOCK_FDS.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _LOCK_FDS.clear()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _lock_path(p: Path) -> Path:
    return p.parent / f".{p.name}.lock"


@contextlib.contextmanager
def one_writer(path: str | os.PathLike, enabled: bool = True):
    """Hold ``path`` for one writer: a second edgeclip process writing the same output is refused in one line,
    instead of both exiting 0 with their files mixed (run.json from one run, the report from the other).

    The lock is ``fcntl.flock`` on a hidden ``.NAME.lock`` beside ``path``, removed on release. flock locks die
    with their process, so a writer killed with -9 leaves no stale lock. Re-entrant within a process (a
    ``compress`` that writes its ``--hf`` copy); a parent that cannot be made is left to ``check_output`` to name.

    Raises:
        ConfigError: another process holds ``path``.
    """
    p = _normal(path)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the writes stay atomic, only the second-writer refusal is lost
        fcntl = None
    if not enabled or fcntl is None:
        yield p
        return
    if p in _HELD:
        _HELD[p] += 1
        try:
            yield p
        finally:
            _HELD[p] -= 1
        return
    lock = _lock_path(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield p
        return
    while True:  # the holder unlinks the file on release: make sure we locked the file that is still there
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ConfigError(f"{os.fspath(path)!r} is being written by another edgeclip process"
                              f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish or choose "
                              "another output path") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[p], _LOCK_FDS[p] = 1, fd
    try:
        yield p
    finally:
        if _LOCK_FDS.pop(p, None) == fd:  # not in a forked child, whose copy was closed at the fork
            del _HELD[p]
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
