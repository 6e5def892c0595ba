"""Checks an artifact folder before onnxruntime opens it: paths stay inside, files match their sha256, parity passed.

Why: ``manifest.json`` records a sha256 for every file and a parity verdict for every variant; a file altered
after export (a re-saved ``.onnx.data``, an edited ``preprocess.json``) or a variant whose gates failed would
otherwise load silently and return drifted embeddings. The hashes guard against corruption and mix-ups (a partial
copy, a file from another export), not against someone who also rewrites ``manifest.json``.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..artifact import (MANIFEST, PARITY_JSON, PARITY_MD, PREPROCESS, TOKENIZER, check_manifest_version,
                        weights_beside)
from ..errors import ConfigError, IntegrityError, ParityError

_LOCATION = b"\x0a\x08location\x12"  # protobuf bytes of an ONNX external-data entry: key "location", value next
_CHUNK = 1 << 20


@dataclass
class ArtifactFiles:
    """The files one variant reads, resolved inside the artifact folder."""
    image: Path
    text: Path
    vocab: Path
    preprocess: Path
    tokenizer_cfg: dict
    parity: str  # "passed" | "failed" | "not run" (no runtime where it was exported) | "unchecked" (no verdict)
    fingerprint: str | None  # identifies the exported weights; None when the manifest records no hashes
    verified: tuple[str, ...] = ()  # file names whose sha256 was checked


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path.name} of the artifact: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path.name} of the artifact is not a JSON object")
    return obj


def load_manifest(artifact: str | Path) -> dict:
    """An artifact folder's ``manifest.json``: one line when the folder is no artifact, the file is unreadable, or
    its format is newer than this edgeclip reads (what ``load`` and ``bench`` open first)."""
    path = Path(artifact) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{str(artifact)!r} is not an edgeclip artifact folder (no {MANIFEST})")
    manifest = read_json(path)
    check_manifest_version(manifest, str(artifact))
    return manifest


def inside(root: Path, rel, what: str) -> Path:
    """``root / rel`` resolved, refusing absolute paths, ``..`` and symlinks that lead out of ``root``."""
    if not isinstance(rel, str) or not rel:
        raise IntegrityError(f"{what} path {rel!r} in the artifact is not a file name")
    full = (root / rel).resolve()
    if Path(rel).is_absolute() or not full.is_relative_to(root.resolve()):
        raise IntegrityError(f"{what} path {rel!r} points outside the artifact folder {str(root)!r}; refusing it")
    return full


def parity_verdict(manifest: dict, variant: str) -> str:
    rec = (manifest.get("parity") or {}).get(variant)
    if rec is None:
        return "unchecked"
    if isinstance(rec, dict) and rec.get("passed") is None and rec.get("status"):
        return "not run"  # e.g. Core ML off macOS: converted, never run, so never "passed"
    return "passed" if isinstance(rec, dict) and rec.get("passed") is True else "failed"


def check_artifact(root: Path, manifest: dict, variant: str, verify: bool = True,
                   allow_failed_parity: bool = False) -> ArtifactFiles:
    """Resolve and check every file ``variant`` uses; see ``edgeclip.runtime.load`` for the rules.

    Raises:
        ParityError: the variant failed its parity gates and ``allow_failed_parity`` is False.
        IntegrityError: a path leaves the folder, or (``verify``) a file is missing from the manifest or differs
            from its recorded sha256.
    """
    parity = parity_verdict(manifest, variant)
    if parity == "failed" and not allow_failed_parity:
        failed = "; ".join(map(str, (manifest["parity"][variant] or {}).get("failed") or []))[:200]
        raise ParityError(f"variant {variant!r} failed its parity gates at export ({failed or 'no details'}); use a "
                          "variant that passed, or pass allow_failed_parity=True to load it anyway")
    graphs = manifest["variants"][variant]
    if not isinstance(graphs, dict):
        raise ConfigError(f"manifest.json entry of variant {variant!r} is not an object")
    image, text = inside(root, graphs.get("image"), f"{variant} image"), inside(root, graphs.get("text"), f"{variant} text")
    tok_path, pre_path = inside(root, TOKENIZER, "tokenizer"), inside(root, PREPROCESS, "preprocess")
    verified: list[str] = []
    if verify:  # tokenizer.json is checked before we trust the vocabulary name it holds
        verified += _verify(root, manifest, [tok_path, pre_path, image, text])
    tok = read_json(tok_path)
    vocab = inside(root, tok.get("vocab_file"), "tokenizer vocabulary")
    if verify:  # the parity reports of artifacts that recorded their hashes (older ones did not)
        reports = [inside(root, n, "parity report") for n in (PARITY_JSON, PARITY_MD) if n in manifest.get("files", {})]
        verified += _verify(root, manifest, [vocab, *reports])
    return ArtifactFiles(image, text, vocab, pre_path, tok, parity, fingerprint(manifest), tuple(verified))


def fingerprint(manifest: dict) -> str | None:
    """Hash of the fp32 graphs' and weight files' sha256s: the same for every variant of one export, different
    for any other export (weights live in ``.onnx.data``, so the graph files alone would not tell two apart)."""
    files = manifest.get("files") or {}
    fp32 = (manifest.get("variants") or {}).get("fp32") or {}
    names = sorted({n for g in fp32.values() if isinstance(g, str) for n in (g, g + ".data") if n in files})
    if not names:
        return None
    return hashlib.sha256("".join(f"{n}={files[n]}\n" for n in names).encode()).hexdigest()[:16]


def _verify(root: Path, manifest: dict, paths: list[Path]) -> list[str]:
    """Check each file (and each ONNX external-data file it names) against the manifest; returns names checked."""
    recorded = manifest.get("files")
    if not isinstance(recorded, dict) or not recorded:
        raise IntegrityError("manifest.json records no sha256 for the artifact's files; re-export it, or pass "
                             "verify=False to load it unchecked")
    base, done, todo = root.resolve(), [], list(paths)
    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL: the two encoders hash in parallel
        while todo:
            refs: list[Path] = []
            for path, (digest, names) in zip(todo, pool.map(_hash_and_refs, todo)):
                name = path.relative_to(base).as_posix()
                if name not in recorded:
                    raise IntegrityError(f"{name} has no sha256 in manifest.json; re-export the artifact, or pass "
                                         "verify=False to load it unchecked")
                if digest != recorded[name]:
                    raise IntegrityError(f"{name} does not match its sha256 in manifest.json (altered or corrupt "
                                         "after export); re-export the artifact, or pass verify=False to load it anyway")
                done.append(name)
                refs += [inside(path.parent, r, f"external data of {name}") for r in names]
            todo = [p for p in dict.fromkeys(refs) if p.relative_to(base).as_posix() not in done]
    return done


def tree_sha256(folder: Path) -> str:
    """One sha256 for a folder (a Core ML ``.mlpackage``): over each file's relative path and sha256, sorted."""
    lines = []
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        lines.append(f"{p.relative_to(folder).as_posix()}={_hash_and_refs(p)[0]}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _hash_and_refs(path: Path) -> tuple[str, list[str]]:
    """sha256 of a file in one streaming read; for ``.onnx`` files also the external-data file names it holds, for
    an OpenVINO ``.xml`` its weights file (``.bin`` beside it, which OpenVINO opens by that rule)."""
    if path.is_dir():
        return tree_sha256(path), []
    h, refs, hits, tail, pos = hashlib.sha256(), [], [], b"", 0
    scan = path.suffix == ".onnx"
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                if scan:
                    buf = tail + chunk
                    i = buf.find(_LOCATION)
                    while i >= 0:
                        hits.append(pos - len(tail) + i + len(_LOCATION))
                        i = buf.find(_LOCATION, i + 1)
                    tail = buf[-(len(_LOCATION) - 1):]
                    pos += len(chunk)
            for off in hits:
                f.seek(off)
                refs.append(_read_string(f))
    except OSError as e:
        raise IntegrityError(f"cannot read {path.name} of the artifact: {e.strerror or e}") from None
    if path.suffix == ".xml":
        refs.append(weights_beside(path.name))
    return h.hexdigest(), sorted(set(refs))


def _read_string(f) -> str:
    """A protobuf length-prefixed string (varint length, then UTF-8 bytes) at the file's position."""
    n, shift = 0, 0
    while shift < 35:
        b = f.read(1)
        if not b:
            break
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if b[0] < 0x80:
            break
    return f.read(min(n, 4096)).decode("utf-8", "replace")
