"""Checks an artifact folder before onnxruntime opens it: paths stay inside, files match their sha256, parity passed.

Why: ``manifest.json`` records a sha256 for every file and a parity verdict for every variant; a file altered
after export (a re-saved ``.onnx.data``, an edited ``preprocess.json``) or a variant whose gates failed would
otherwise load silently and return drifted embeddings. The hashes guard against corruption and mix-ups (a partial
copy, a file from another export), not against someone who also rewrites ``manifest.json``.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..artifact import PARITY_JSON, PARITY_MD, PREPROCESS, TOKENIZER
from ..artifact.manifest import Manifest, hash_and_refs, read_json
from ..errors import ConfigError, IntegrityError, ParityError


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


def inside(root: Path, rel, what: str) -> Path:
    """``root / rel`` resolved, refusing absolute paths, ``..`` and symlinks that lead out of ``root``."""
    if not isinstance(rel, str) or not rel:
        raise IntegrityError(f"{what} path {rel!r} in the artifact is not a file name")
    full = (root / rel).resolve()
    if Path(rel).is_absolute() or not full.is_relative_to(root.resolve()):
        raise IntegrityError(f"{what} path {rel!r} points outside the artifact folder {str(root)!r}; refusing it")
    return full


def check_artifact(root: Path, manifest: Manifest, variant: str, verify: bool = True,
                   allow_failed_parity: bool = False) -> ArtifactFiles:
    """Resolve and check every file ``variant`` uses; see ``edgeclip.runtime.load`` for the rules.

    Raises:
        ParityError: the variant failed its parity gates and ``allow_failed_parity`` is False.
        IntegrityError: a path leaves the folder, or (``verify``) a file is missing from the manifest or differs
            from its recorded sha256.
    """
    parity = manifest.verdict(variant)
    if parity == "failed" and not allow_failed_parity:
        failed = "; ".join(manifest.parity[variant].failed)[:200]
        raise ParityError(f"variant {variant!r} failed its parity gates at export ({failed or 'no details'}); use a "
                          "variant that passed, or pass allow_failed_parity=True to load it anyway")
    v = manifest.variant(variant)
    image, text = inside(root, v.image, f"{variant} image"), inside(root, v.text, f"{variant} text")
    tok_path, pre_path = inside(root, TOKENIZER, "tokenizer"), inside(root, PREPROCESS, "preprocess")
    verified: list[str] = []
    if verify:  # tokenizer.json is checked before we trust the vocabulary name it holds
        verified += _verify(root, manifest, [tok_path, pre_path, image, text])
    tok = read_json(tok_path)
    vocab = inside(root, tok.get("vocab_file"), "tokenizer vocabulary")
    if verify:  # the parity reports of artifacts that recorded their hashes (older ones did not)
        reports = [inside(root, n, "parity report") for n in (PARITY_JSON, PARITY_MD) if n in manifest.files]
        verified += _verify(root, manifest, [vocab, *reports])
    return ArtifactFiles(image, text, vocab, pre_path, tok, parity, fingerprint(manifest), tuple(verified))


def fingerprint(manifest: Manifest) -> str | None:
    """Hash of the fp32 graphs' and weight files' sha256s: the same for every variant of one export, different
    for any other export (weights live in ``.onnx.data``, so the graph files alone would not tell two apart)."""
    files = manifest.files
    fp32 = manifest.variants.get("fp32")
    names = sorted({n for g in (fp32.files if fp32 else ()) for n in (g, g + ".data") if n in files})
    if not names:
        return None
    return hashlib.sha256("".join(f"{n}={files[n]}\n" for n in names).encode()).hexdigest()[:16]


def _verify(root: Path, manifest: Manifest, paths: list[Path]) -> list[str]:
    """Check each file (and each ONNX external-data file it names) against the manifest; returns names checked."""
    recorded = manifest.files
    if not recorded:
        raise IntegrityError("manifest.json records no sha256 for the artifact's files; re-export it, or pass "
                             "verify=False to load it unchecked")
    base, done, todo = root.resolve(), [], list(paths)
    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL: the two encoders hash in parallel
        while todo:
            refs: list[Path] = []
            for path, (digest, names) in zip(todo, pool.map(hash_and_refs, todo)):
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


def load_head(root: Path, manifest: Manifest, verify: bool = True):
    """The label head's (labels, embeddings [N, D] float32), each file checked against its sha256 first."""
    import numpy as np
    head = manifest.head
    emb_path = inside(root, head.get("embeddings"), "label head")
    lab_path = inside(root, head.get("labels"), "labels")
    if verify:
        _verify(root, manifest, [emb_path, lab_path])
    try:
        emb = np.load(emb_path, allow_pickle=False)
        labels = read_json(lab_path).get("labels")
    except (OSError, ValueError) as e:
        raise IntegrityError(f"the artifact's label head is damaged: {str(e).splitlines()[0][:200]}") from None
    if (emb.ndim != 2 or not isinstance(labels, list) or len(labels) != len(emb) or emb.shape[1] != manifest.embed_dim
            or not np.isfinite(emb).all()):
        n = len(labels) if isinstance(labels, list) else "?"
        raise IntegrityError(f"the artifact's label head is damaged: {n} labels for embeddings of shape "
                             f"{list(emb.shape)}")
    return [str(x) for x in labels], emb.astype(np.float32, copy=False)
