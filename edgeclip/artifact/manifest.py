"""``manifest.json``: one typed record of an artifact, with its one reader, its one writer and its one hash rule.

Why one module: the export writes the manifest once, at the end, and afterwards only ``edgeclip bench`` updates it
(its record of the fastest pair); the runtime, the CLI and the demo read it. Two readers with two hash rules drifted
apart before (issue #35). No torch, numpy or onnx here: the device install reads and writes it too.

A variant is a record (format, precision, recipe) plus its two files, never a packed string. Its *name* (the key in
``variants``) is what users pass as ``variant=``; the gates it is held to come from ``Variant.gate``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, IntegrityError

__all__ = ["Variant", "Verdict", "Manifest", "read_manifest", "write_manifest", "hash_folder", "sha256",
           "tree_sha256", "hash_and_refs", "split_precision", "weights_beside", "encoder_bytes", "variant_bytes",
           "read_json"]

MANIFEST = "manifest.json"
FORMAT = "edgeclip-artifact"
# 1: variants as packed names ("executorch-int8-static") with an optional "target"; 2: every variant a record
# (format, precision, recipe), TensorRT engines as variants, written once per export
MANIFEST_VERSION = 2
FORMAT_TAG = f"{FORMAT}/{MANIFEST_VERSION}"
REEXPORT = "re-export it with 'edgeclip export STUDENT --out DIR'"

_VARIANT_KEYS = ("format", "precision", "recipe", "image", "text", "backends")
_MODEL_KEYS = ("embed_dim", "image_size", "context_length", "model_cfg")
_VERSION_KEYS = ("edgeclip", "torch", "onnx", "onnxruntime", "opset")
_KNOWN = {"edgeclip_output", "format", "variants", "parity", "files", "dropped", "timings", "fastest", "head",
          *_MODEL_KEYS, *_VERSION_KEYS}
_CHUNK = 1 << 20
_LOCATION = b"\x0a\x08location\x12"  # protobuf bytes of an ONNX external-data entry: key "location", value next


def split_precision(name: str) -> tuple[str, str]:
    """``int8-dynamic-full`` -> (``int8``, ``dynamic-full``); ``fp32-opt`` -> (``fp32``, ``opt``); ``fp16`` ->
    (``fp16``, ``""``). The numeric type comes first, the recipe that produced it after."""
    head, _, rest = name.partition("-")
    return (head, rest) if head in ("fp32", "fp16", "bf16", "int8", "int4") else (name, "")


@dataclass
class Variant:
    """One runnable pair of encoders: which format its files are, its numeric precision and the recipe that made it.

    ``backends`` narrows the format's runtimes (OpenVINO's bf16 hint runs the ONNX graphs on OpenVINO only);
    ``options`` holds what a format records of its own (OpenVINO properties, ExecuTorch's max batch, TensorRT's
    version and GPU), written flat beside the known keys.
    """
    format: str
    precision: str
    recipe: str = ""
    image: str = ""
    text: str = ""
    backends: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @property
    def gate(self) -> str:
        """The precision and recipe as one name (``int8-static``): the key of the parity gates."""
        return f"{self.precision}-{self.recipe}" if self.recipe else self.precision

    @property
    def files(self) -> tuple[str, str]:
        return self.image, self.text

    def to_dict(self) -> dict:
        d = {"format": self.format, "precision": self.precision, "recipe": self.recipe, "image": self.image,
             "text": self.text}
        if self.backends:
            d["backends"] = list(self.backends)
        return {**d, **self.options}

    @classmethod
    def from_dict(cls, name: str, d, version: int, where: str) -> "Variant":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: manifest.json entry of variant {name!r} is not an object")
        d = dict(d)
        if version == 1:  # v1: a packed name and an optional "target"; the format and recipe are read off them
            target = d.pop("target", None)
            base = d.pop("precision", None) or (name[len(target) + 1:] if target and name.startswith(f"{target}-")
                                                else name)
            fmt = target or ("openvino-ir" if str(d.get("image", "")).endswith(".xml") else "onnx")
            precision, recipe = split_precision(base)
        else:
            fmt, precision, recipe = d.pop("format", None), d.pop("precision", None), d.pop("recipe", "")
        backends = d.pop("backends", ())
        image, text = d.pop("image", None), d.pop("text", None)
        if not all(isinstance(x, str) and x for x in (fmt, precision, image, text)) or not isinstance(recipe, str):
            raise ConfigError(f"{where}: manifest.json variant {name!r} needs format, precision, image and text "
                              "strings; " + REEXPORT)
        if not isinstance(backends, (list, tuple)) or not all(isinstance(b, str) for b in backends):
            raise ConfigError(f"{where}: manifest.json variant {name!r} has a malformed 'backends' list")
        return cls(fmt, precision, recipe, image, text, tuple(backends), d)


@dataclass
class Verdict:
    """A variant's parity at export: ``passed`` None with a ``status`` when it could not run there (Core ML off
    macOS), never True then."""
    passed: bool | None
    failed: list[str] = field(default_factory=list)
    status: str = ""

    def to_dict(self) -> dict:
        return {"passed": self.passed, "failed": list(self.failed), **({"status": self.status} if self.status else {})}

    @classmethod
    def from_dict(cls, d) -> "Verdict":
        if not isinstance(d, dict):
            return cls(False, ["malformed parity record"])
        failed = d.get("failed") or []
        return cls(d.get("passed") if isinstance(d.get("passed"), bool) else None,
                   [str(f) for f in failed] if isinstance(failed, list) else [str(failed)], str(d.get("status") or ""))

    @property
    def word(self) -> str:
        """"passed" | "failed" | "not run"."""
        if self.passed is None and self.status:
            return "not run"
        return "passed" if self.passed is True else "failed"


@dataclass
class Manifest:
    """Everything ``manifest.json`` says. ``files`` maps every file name to its sha256 (``hash_folder``)."""
    variants: dict[str, Variant] = field(default_factory=dict)
    parity: dict[str, Verdict] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    embed_dim: int | None = None
    image_size: int | None = None
    context_length: int | None = None
    model_cfg: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)  # edgeclip, torch, onnx, onnxruntime, opset of the export
    dropped: dict[str, list[str]] = field(default_factory=dict)  # optional variants that failed, and why
    timings: dict = field(default_factory=dict)
    fastest: dict = field(default_factory=dict)  # edgeclip bench's record ("auto" reads it)
    head: dict = field(default_factory=dict)  # a label head: {"embeddings", "labels" (files), "count", "templates"}
    extra: dict = field(default_factory=dict)  # other top-level keys (trt_readiness, ...), kept as written
    version: int = MANIFEST_VERSION

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; one line listing the others when there is none."""
        if name not in self.variants:
            raise ConfigError(f"artifact has no variant {name!r}; it has {sorted(self.variants)}")
        return self.variants[name]

    def verdict(self, name: str) -> str:
        """"passed" | "failed" | "not run" | "unchecked" (no record: exported without gates)."""
        v = self.parity.get(name)
        return v.word if v is not None else "unchecked"

    def to_dict(self) -> dict:
        d = {"edgeclip_output": "artifact", "format": FORMAT_TAG, **self.versions}
        for k in _MODEL_KEYS:
            if getattr(self, k) not in (None, {}):
                d[k] = getattr(self, k)
        d["variants"] = {n: v.to_dict() for n, v in self.variants.items()}
        d["parity"] = {n: v.to_dict() for n, v in self.parity.items()}
        d["files"] = dict(sorted(self.files.items()))
        for k in ("dropped", "timings", "fastest", "head"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Manifest":
        version = schema_version(d, where)
        variants = d.get("variants", {})
        if not isinstance(variants, dict):
            raise ConfigError(f"{where}: manifest.json 'variants' is not a mapping; " + REEXPORT)
        parity = d.get("parity") or {}
        files = d.get("files") or {}
        m = cls(variants={n: Variant.from_dict(n, e, version, where) for n, e in variants.items()},
                parity={n: Verdict.from_dict(v) for n, v in parity.items()} if isinstance(parity, dict) else {},
                files={k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {},
                versions={k: d[k] for k in _VERSION_KEYS if k in d},
                dropped=d.get("dropped") or {}, timings=d.get("timings") or {}, fastest=d.get("fastest") or {},
                head=d.get("head") or {},
                extra={k: v for k, v in d.items() if k not in _KNOWN}, version=version)
        for k in _MODEL_KEYS:
            if k in d:
                setattr(m, k, d[k])
        from .formats import get_format
        for n, v in m.variants.items():  # an unknown format is refused here, in one line, before any use
            get_format(v.format, f"{where}: variant {n!r}")
        return m


def schema_version(d: dict, where: str) -> int:
    """The manifest's schema version from ``"format": "edgeclip-artifact/N"``. Another format, or a version this
    edgeclip does not read, is one line naming it (an older edgeclip must not guess at unknown fields). A manifest
    without the field is read as version 1 (hand-made manifests; every export writes it)."""
    tag = d.get("format", f"{FORMAT}/1")
    name, _, ver = str(tag).partition("/")
    if name != FORMAT or not ver.isdigit():
        raise ConfigError(f"{where}: manifest.json format {tag!r} is not {FORMAT}/N; not an edgeclip artifact")
    if int(ver) > MANIFEST_VERSION or int(ver) < 1:
        raise ConfigError(f"{where}: the artifact is {tag}; this edgeclip reads {FORMAT}/1 to {FORMAT_TAG} "
                          f"(upgrade edgeclip, or {REEXPORT})")
    return int(ver)


def read_json(path: Path, where: str = "the artifact") -> dict:
    """A JSON object file of an artifact (the manifest, ``tokenizer.json``, ``preprocess.json``, ``labels.json``);
    unreadable, malformed or not an object is one ``ConfigError`` line."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {Path(path).name} of {where}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{Path(path).name} of {where} is not a JSON object")
    return d


def read_manifest(folder: str | Path) -> Manifest:
    """The one reader: ``folder/manifest.json`` as a ``Manifest``; every problem is one ``ConfigError`` line."""
    where = repr(str(folder))
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{where} is not an edgeclip artifact folder (no {MANIFEST})")
    return Manifest.from_dict(read_json(path, where), where)


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """The one writer: ``manifest`` as ``folder/manifest.json``, atomically (temp file + rename in the folder).

    File hashes are written as ``manifest.files`` holds them: the export fills them with ``hash_folder`` once
    every file is in place; ``bench`` keeps them as read, so a file altered after export stays refused.

    Raises:
        ConfigError: the folder cannot be written (read-only, full): one line, and the old manifest is intact.
    """
    folder = Path(folder)
    path, tmp = folder / MANIFEST, folder / f".{MANIFEST}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder: nothing was written
        raise ConfigError(f"cannot write {MANIFEST} in {str(folder)!r}: {e.strerror or e}") from None
    return path


def encoder_bytes(folder: str | Path, name: str) -> int:
    """What one encoder ships: its file (a Core ML ``.mlpackage`` folder summed) and the files it reads beside it
    (the external data an ONNX graph names, an OpenVINO IR's ``.bin``)."""
    total, path = 0, Path(folder) / name
    beside = hash_and_refs(path)[1] if path.suffix == ".onnx" and path.is_file() else [weights_beside(name)]
    for p in {path, *(Path(folder) / r for r in beside)}:  # an ORT-optimised graph names the fp32 graph's .data
        if p.is_dir():
            total += sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


def variant_bytes(folder: str | Path, variant: Variant, tokenizer_files=()) -> dict[str, int]:
    """Bytes a variant ships: image encoder, text encoder, tokenizer files, and their total."""
    out = {"image": encoder_bytes(folder, variant.image), "text": encoder_bytes(folder, variant.text),
           "tokenizer": sum((Path(folder) / f).stat().st_size for f in tokenizer_files if (Path(folder) / f).is_file())}
    return {**out, "total": sum(out.values())}


def hash_folder(folder: str | Path) -> dict[str, str]:
    """sha256 of every file the artifact holds (a Core ML ``.mlpackage`` folder as one tree hash), by name; the
    manifest itself and hidden files are left out."""
    folder = Path(folder)
    return {p.name: sha256(p) for p in sorted(folder.iterdir())
            if (p.is_file() or p.suffix == ".mlpackage") and p.name != MANIFEST and not p.name.startswith(".")}


def sha256(path: str | Path) -> str:
    """The hash rule: a file's sha256; a folder's (a ``.mlpackage``) ``tree_sha256``."""
    return hash_and_refs(Path(path))[0]


def tree_sha256(folder: Path) -> str:
    """One sha256 for a folder: over each file's relative path and sha256, sorted."""
    lines = [f"{p.relative_to(folder).as_posix()}={hash_and_refs(p)[0]}\n"
             for p in sorted(q for q in folder.rglob("*") if q.is_file())]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def weights_beside(name: str) -> str:
    """The file an encoder reads from beside it: an ONNX graph's external data (``NAME.data``), or an OpenVINO IR's
    weights (``.xml`` -> ``.bin``, the name OpenVINO opens by its own rule)."""
    return name[:-len(".xml")] + ".bin" if name.endswith(".xml") else f"{name}.data"


def hash_and_refs(path: Path) -> tuple[str, list[str]]:
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
