"""Loading teachers (open_clip names, checkpoints, student folders, HF folders) and saving students.

A student folder follows open_clip's local-dir convention (``open_clip_config.json`` + ``model.safetensors``)
so plain ``open_clip.create_model_and_transforms("local-dir:PATH")`` loads it without edgeclip.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..outputs import atomic_path, check_output
from ..errors import ConfigError
from .weights import (FINGERPRINT_KEY, check_finite, config_fingerprint, load_weights, read_fingerprint,
                         read_state_dict)
from .towers import text_cfg
from .factory import OPENAI_MEAN, OPENAI_STD, create_model, default_preprocess_cfg, model_config  # noqa: F401

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "open_clip_config.json"
REFERENCE_TEACHER = Path(__file__).resolve().parent.parent / "assets" / "reference_teacher"


def preprocess_cfg(model) -> dict:
    """The model's own preprocess config (from its folder), or the default for its architecture."""
    return getattr(model, "edgeclip_preprocess", None) or default_preprocess_cfg(model_config(model))


def get_preprocess(model):
    """open_clip's eval transform (PIL image -> normalised tensor) for ``model``: the ``preprocess`` half of
    ``open_clip.create_model_and_transforms``, from the model's own preprocess config."""
    return image_transform(preprocess_cfg(model))


def image_transform(pre: dict):
    """open_clip's eval transform (PIL -> normalised tensor) for a preprocess config."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    keys = ("size", "mean", "std", "interpolation", "resize_mode")
    return image_transform_v2(PreprocessCfg(**{k: pre[k] for k in keys if k in pre}), is_train=False)


def save_student(model, out: str | os.PathLike, preprocess_cfg: dict | None = None, fp16: bool = False,
                 hf: bool = False, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``open_clip_config.json`` + ``model.safetensors`` (+ ``hf/`` CLIPModel copy) atomically.

    Args:
        model: a canonical CLIP built by edgeclip (it carries its config).
        out: destination folder; replaced as a whole only once everything is written.
        preprocess_cfg: open_clip preprocess config; defaults to OpenAI mean/std at the model's image size.
        fp16: store weights in float16 (half the size; loaded back as float32).
        hf: also write a Hugging Face ``CLIPModel`` copy under ``hf/`` (needs the ``[hf]`` extra).
        extra: more JSON-able metadata stored under ``"edgeclip"`` in the config file.
        overwrite: replace an existing student folder (anything else at ``out`` is refused: ``check_output``).

    Raises:
        NonFiniteError: a weight is NaN/Inf (nothing is written).
    """
    from safetensors.torch import save_file

    out = check_output(out, "student", overwrite)
    cfg = model_config(model)
    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    check_finite(sd, f"student for {str(out)!r}", "refusing to save it")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        meta = {"edgeclip_output": "student", "model_cfg": cfg,  # plain open_clip ignores the kind key
                "preprocess_cfg": preprocess_cfg or default_preprocess_cfg(cfg)}
        if extra:
            meta["edgeclip"] = extra
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        bpe = text_cfg(cfg).bpe_file
        if bpe is not None:  # a pruned vocabulary travels with the student: open_clip reads it with bpe_path=
            import shutil
            shutil.copyfile(model.edgeclip_bpe, tmp / bpe)
        save_file(sd, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", FINGERPRINT_KEY: config_fingerprint(cfg)})
        if hf:
            from .hf import save_hf
            save_hf(model, tmp / "hf", meta["preprocess_cfg"])
    return Path(out)


def load_student(path: str | os.PathLike, device: str = "cpu"):
    """Load an edgeclip / open_clip local-dir folder as a canonical CLIP in eval mode (like ``load_teacher``).

    ``model.edgeclip_preprocess`` holds the folder's preprocess config; ``get_preprocess(model)`` turns it into
    open_clip's eval transform.
    """
    folder = Path(path)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise ConfigError(f"{str(folder)!r} has no {CONFIG_NAME}; is it a student folder?")
    try:
        meta = json.loads(cfg_path.read_text())
        cfg = meta["model_cfg"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ConfigError(f"{str(cfg_path)!r} is malformed: {e}") from None
    weights = next((folder / n for n in (WEIGHTS_NAME, "open_clip_model.safetensors") if (folder / n).is_file()), None)
    if weights is None:
        raise ConfigError(f"{str(folder)!r} has no {WEIGHTS_NAME}")
    _check_fingerprint(cfg, weights, cfg_path)
    model = create_model(cfg)
    load_weights(model, read_state_dict(weights), str(weights))
    bpe = text_cfg(cfg).bpe_file
    if bpe is not None:  # a pruned vocabulary: its merges file, inside the folder, with as many tokens as rows
        from .vocab import BYTE_TOKENS, read_merges
        path = (folder / str(bpe)).resolve()
        if not path.is_relative_to(folder.resolve()) or not path.is_file():
            raise ConfigError(f"{str(cfg_path)!r} names a vocabulary file {bpe!r} that is not in the folder")
        n = BYTE_TOKENS + len(read_merges(path)) + 2
        if n != text_cfg(cfg).vocab_size:
            raise ConfigError(f"{str(path)!r} has {n} tokens, the model's embedding {text_cfg(cfg).vocab_size}")
        model.edgeclip_bpe = path
    model.edgeclip_preprocess = meta.get("preprocess_cfg") or default_preprocess_cfg(cfg)
    model.edgeclip_meta = meta.get("edgeclip", {})
    return model.to(device).eval()


def _check_fingerprint(cfg: dict, weights: Path, cfg_path: Path) -> None:
    """Weights saved by edgeclip carry their config's fingerprint; an edited config is refused (one line).
    Files without one (plain open_clip, older students) load as before."""
    saved = read_fingerprint(weights)
    if saved is not None and saved != config_fingerprint(cfg):
        raise ConfigError(f"{str(cfg_path)!r} no longer matches the config {str(weights)!r} was saved with "
                          f"(fingerprint {saved[:12]} != {config_fingerprint(cfg)[:12]}: heads, widths or other "
                          "settings were edited); restore the original config or re-save the student")


def load_teacher(teacher: str | os.PathLike | None = None, pretrained: str | None = None, device: str = "cpu"):
    """Load any supported teacher as a canonical open_clip ``CLIP`` in eval mode.

    Args:
        teacher: ``None`` or ``"reference"`` for the shipped ShapesWorld teacher; a student/open_clip folder
            (``open_clip_config.json``); a Hugging Face ``CLIPModel`` folder (``config.json`` +
            ``model.safetensors``); or a model name (edgeclip's or open_clip's), optionally ``"local-dir:PATH"``.
        pretrained: with a model name: a local checkpoint file (``.safetensors``, ``.pt``/``.bin`` read with
            ``weights_only=True``) or an open_clip pretrained tag (needs network; offline it fails clearly).
        device: target device.

    Returns:
        The model; ``model.edgeclip_preprocess`` holds its preprocess config.

    Raises:
        ConfigError: unknown name, unreadable or mismatched checkpoint, or a download attempted offline.
    """
    if teacher is None or str(teacher) == "reference":
        if not (REFERENCE_TEACHER / WEIGHTS_NAME).is_file():  # the wheel leaves the 33 MB teacher out
            raise ConfigError(f"the reference teacher is not in this install ({REFERENCE_TEACHER}): it ships in the "
                              "source checkout only; install from a clone (pip install -e '.[train]') or pass its "
                              "folder, e.g. CLONE/edgeclip/assets/reference_teacher")
        teacher = REFERENCE_TEACHER
    name = str(teacher).removeprefix("local-dir:")
    path = Path(name)
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return load_student(path, device)
        if (path / "config.json").is_file():
            from .hf import load_hf
            model = load_hf(path)
            if not getattr(model, "edgeclip_preprocess", None):
                model.edgeclip_preprocess = default_preprocess_cfg(model.edgeclip_cfg)
            return model.to(device).eval()
        raise ConfigError(f"folder {name!r} holds neither {CONFIG_NAME} nor an HF config.json")
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin") and pretrained is None:
        raise ConfigError(f"{name!r} is a checkpoint file; pass the architecture name too, e.g. "
                          f"load_teacher('ViT-B-32', pretrained={name!r})")
    model = create_model(name)
    if pretrained:
        if Path(pretrained).is_file():
            load_weights(model, read_state_dict(pretrained), pretrained)
        else:
            _load_pretrained_tag(model, name, pretrained)
    else:
        import warnings
        warnings.warn(f"{name!r} is randomly initialised (no weights given): pass its checkpoint as "
                      f"load_teacher({name!r}, pretrained='FILE') or --pretrained FILE", stacklevel=2)
    model.edgeclip_preprocess = default_preprocess_cfg(model.edgeclip_cfg)
    return model.to(device).eval()


def _load_pretrained_tag(model, name: str, tag: str) -> None:
    import open_clip
    if not open_clip.get_pretrained_cfg(name, tag):
        raise ConfigError(f"{tag!r} is neither a file nor a pretrained tag of {name!r}; "
                          f"known tags: {open_clip.list_pretrained_tags_by_model(name)}")
    try:
        ckpt = open_clip.download_pretrained(open_clip.get_pretrained_cfg(name, tag))
    except Exception:
        raise ConfigError(f"cannot download {name}/{tag} (offline?); download the weights elsewhere and pass "
                          f"the local file: load_teacher({name!r}, pretrained='PATH/open_clip_model.safetensors')"
                          ) from None
    load_weights(model, read_state_dict(ckpt), ckpt)
