"""Hugging Face ``CLIPModel`` <-> open_clip ``CLIP`` conversion, by state dict (no transformers needed).

A saved folder also holds CLIP's tokenizer files and ``preprocessor_config.json``, so ``CLIPProcessor`` loads it
offline.

HF keeps separate q/k/v projections, stores projections as [embed, width] Linear weights and names the
LayerNorms ``pre_layrnorm`` / ``post_layernorm`` / ``final_layer_norm``; open_clip fuses q/k/v into
``in_proj`` and stores ``proj`` as [width, embed]. EOT pooling agrees when HF's ``eos_token_id`` is 49407
(open_clip takes the argmax id, which is the first end-of-text token).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ConfigError
from .weights import load_weights, read_state_dict
from .factory import create_model, default_preprocess_cfg, model_config
from .towers import TextCfg, VisionCfg, text_cfg, vision_cfg

SOT, EOT = 49406, 49407
_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
          "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def hf_config_to_open_clip(hf: dict) -> dict:
    """HF ``config.json`` dict --> open_clip model config.

    A key HF leaves out takes transformers' default, which for the input size (224 px) and the context length
    (77 tokens) is open_clip's (``VisionCfg`` / ``TextCfg``; ``tests/models/test_towers.py`` checks both).
    """
    try:
        v, t = hf["vision_config"], hf["text_config"]
        cfg = {
            "embed_dim": hf.get("projection_dim", 512),
            "vision_cfg": {"image_size": v.get("image_size", VisionCfg.image_size),
                           "layers": v["num_hidden_layers"], "width": v["hidden_size"], "patch_size": v["patch_size"],
                           "head_width": v["hidden_size"] // v["num_attention_heads"],
                           "mlp_ratio": v["intermediate_size"] / v["hidden_size"]},
            "text_cfg": {"context_length": t.get("max_position_embeddings", TextCfg.context_length),
                         "vocab_size": t["vocab_size"], "width": t["hidden_size"], "heads": t["num_attention_heads"],
                         "layers": t["num_hidden_layers"], "mlp_ratio": t["intermediate_size"] / t["hidden_size"]},
        }
    except KeyError as e:
        raise ConfigError(f"HF CLIP config lacks {e}; is this a CLIPModel folder?") from None
    acts = {v.get("hidden_act", "quick_gelu"), t.get("hidden_act", "quick_gelu")}
    if len(acts) > 1 or not acts <= {"quick_gelu", "gelu"}:
        raise ConfigError(f"unsupported HF CLIP activations {sorted(acts)}; edgeclip handles gelu and quick_gelu")
    if acts == {"quick_gelu"}:
        cfg["quick_gelu"] = True
    return cfg


def open_clip_config_to_hf(cfg: dict) -> dict:
    """open_clip model config --> HF ``config.json`` dict (``CLIPConfig``)."""
    v, t = vision_cfg(cfg), text_cfg(cfg)
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    return {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": cfg["embed_dim"],
        "logit_scale_init_value": 2.6592,
        "vision_config": {"hidden_size": v.width, "intermediate_size": v.mlp_width,
                          "num_hidden_layers": v.layers, "num_attention_heads": v.heads,
                          "image_size": v.size, "patch_size": v.patch_size,
                          "hidden_act": act, "projection_dim": cfg["embed_dim"], "layer_norm_eps": 1e-5},
        "text_config": {"hidden_size": t.width, "intermediate_size": t.mlp_width,
                        "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
                        "max_position_embeddings": t.context_length, "vocab_size": t.vocab_size,
                        "hidden_act": act, "projection_dim": cfg["embed_dim"], "layer_norm_eps": 1e-5,
                        "bos_token_id": t.vocab_size - 2, "eos_token_id": t.vocab_size - 1, "pad_token_id": 0},
    }


def _tower_pairs(oc: str, hf: str, layers: int):
    """(open_clip prefix, HF prefix) pairs for one tower's transformer blocks."""
    for i in range(layers):
        yield f"{oc}transformer.resblocks.{i}.", f"{hf}encoder.layers.{i}."


# (open_clip key, HF key) of the tensors that are copied as they are
_DIRECT = [
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
    ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
    ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
    ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
]
_TRANSPOSED = [("visual.proj", "visual_projection.weight"), ("text_projection", "text_projection.weight")]


def _key_pairs(cfg: dict):
    """Every (open_clip key, HF key) pair copied directly, blocks included (q/k/v and projections aside)."""
    yield from _DIRECT
    for oc, hf in _block_prefixes(cfg):
        for a, b in _BLOCK.items():
            for p in ("weight", "bias"):
                yield f"{oc}{a}.{p}", f"{hf}{b}.{p}"


def _block_prefixes(cfg: dict):
    """(open_clip prefix, HF prefix) of every transformer block, vision then text."""
    yield from _tower_pairs("visual.", "vision_model.", cfg["vision_cfg"]["layers"])
    yield from _tower_pairs("", "text_model.", cfg["text_cfg"]["layers"])


def hf_to_open_clip_state_dict(sd: dict, cfg: dict) -> dict:
    out = {oc: sd[hf] for oc, hf in _key_pairs(cfg)}
    out.update({oc: sd[hf].T.contiguous() for oc, hf in _TRANSPOSED})
    out["logit_scale"] = sd["logit_scale"].reshape(())
    for oc, hf in _block_prefixes(cfg):
        for p in ("weight", "bias"):  # [3w, w] in_proj = q; k; v
            out[f"{oc}attn.in_proj_{p}"] = torch.cat([sd[f"{hf}self_attn.{n}_proj.{p}"] for n in "qkv"])
    return out


def open_clip_to_hf_state_dict(sd: dict, cfg: dict) -> dict:
    out = {hf: sd[oc] for oc, hf in _key_pairs(cfg)}
    out.update({hf: sd[oc].T.contiguous() for oc, hf in _TRANSPOSED})
    out["logit_scale"] = sd["logit_scale"].reshape(())
    for oc, hf in _block_prefixes(cfg):
        for p in ("weight", "bias"):
            for n, chunk in zip("qkv", sd[f"{oc}attn.in_proj_{p}"].chunk(3)):
                out[f"{hf}self_attn.{n}_proj.{p}"] = chunk.contiguous()
    return out


def load_hf(folder: str | os.PathLike):
    """Load a HF ``CLIPModel`` folder (``config.json`` + ``model.safetensors``) as a canonical open_clip CLIP."""
    folder = Path(folder)
    try:
        hf_cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {folder / 'config.json'}: {e}") from None
    if hf_cfg.get("model_type") not in (None, "clip"):
        raise ConfigError(f"{str(folder)!r} holds a {hf_cfg.get('model_type')!r} model, not a CLIPModel")
    cfg = hf_config_to_open_clip(hf_cfg)
    check_hf_tokenizer(folder, cfg["text_cfg"]["vocab_size"])
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if weights is None:
        raise ConfigError(f"{str(folder)!r} has no model.safetensors or pytorch_model.bin")
    sd = read_state_dict(weights)
    try:
        converted = hf_to_open_clip_state_dict(sd, cfg)
    except KeyError as e:
        raise ConfigError(f"HF checkpoint {str(weights)!r} lacks key {e}") from None
    model = create_model(cfg)
    load_weights(model, converted, str(weights))
    model.edgeclip_preprocess = _preprocess_from_hf(folder, default_preprocess_cfg(cfg))
    return model


def _preprocess_from_hf(folder: Path, default: dict) -> dict:
    """The folder's ``preprocessor_config.json`` mean / std / size when present, else ``default``."""
    try:
        p = json.loads((folder / "preprocessor_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return default
    size = p.get("crop_size") or p.get("size") or {}
    size = size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else size
    return {**default, **({"size": int(size)} if size else {}),
            **({"mean": list(p["image_mean"])} if "image_mean" in p else {}),
            **({"std": list(p["image_std"])} if "image_std" in p else {})}


def save_hf(model, folder: str | os.PathLike, preprocess_cfg: dict | None = None) -> None:
    """Write a folder that ``transformers.CLIPModel`` and ``CLIPProcessor`` load offline, edgeclip not needed:
    ``config.json`` + ``model.safetensors``, the tokenizer files built from open_clip's BPE vocabulary, and
    ``preprocessor_config.json`` from the model's preprocess config."""
    from safetensors.torch import save_file

    cfg = model_config(model)
    if cfg.get("edgeclip_layers"):
        raise ConfigError("a non-uniform pruned model has no HF CLIPModel equivalent; prune with tie_layers=True")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    (folder / "config.json").write_text(json.dumps(open_clip_config_to_hf(cfg), indent=2) + "\n")
    save_file(open_clip_to_hf_state_dict(sd, cfg), str(folder / "model.safetensors"))
    bpe = getattr(model, "edgeclip_bpe", None) if text_cfg(cfg).bpe_file else None  # a pruned vocabulary
    from .vocab import read_merges
    write_hf_tokenizer(folder, text_cfg(cfg).context_length, merges=read_merges(bpe) if bpe else None)
    pre = preprocess_cfg or getattr(model, "edgeclip_preprocess", None) or default_preprocess_cfg(cfg)
    (folder / "preprocessor_config.json").write_text(json.dumps(hf_image_processor_config(pre), indent=2) + "\n")
    (folder / "README.md").write_text(hf_model_card(pre))


SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
           "pad_token": "<|endoftext|>"}


def clip_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """open_clip's BPE vocabulary (token -> id) and merges in rank order, special tokens named as HF names them."""
    from open_clip.tokenizer import SimpleTokenizer
    tok = SimpleTokenizer()
    vocab = {k: v for k, v in tok.encoder.items() if v < SOT}
    vocab.update({SPECIAL["bos_token"]: SOT, SPECIAL["eos_token"]: EOT})
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.__getitem__)
    return vocab, merges


def pruned_bpe_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """A pruned CLIP BPE's token -> id (``edgeclip.models.vocab``), its special tokens named as HF names them."""
    from .vocab import vocab_of
    tokens = vocab_of(merges)
    return {**{t: i for i, t in enumerate(tokens[:-2])}, SPECIAL["bos_token"]: len(tokens) - 2,
            SPECIAL["eos_token"]: len(tokens) - 1}


def write_hf_tokenizer(folder: str | os.PathLike, context_length: int = TextCfg.context_length,
                       merges: list[tuple[str, str]] | None = None) -> None:
    """``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json`` of CLIP's BPE, from
    the vocabulary open_clip ships (never a hub download: offline that silently yields an empty tokenizer), or of
    a pruned one (``merges``: the kept merges in rank order)."""
    folder = Path(folder)
    if merges is None:
        vocab, merges = clip_bpe_vocab()
    else:
        vocab = pruned_bpe_vocab(merges)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges),
                                       encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL, indent=2) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "processor_class": "CLIPProcessor", "model_max_length": context_length,
         "do_lower_case": True, "errors": "replace", "add_prefix_space": False, **SPECIAL}, indent=2) + "\n")


def hf_image_processor_config(pre: dict) -> dict:
    """open_clip preprocess config --> ``CLIPImageProcessor`` config (resize shortest side + centre crop, or
    squash to the square; bicubic = PIL resample 3)."""
    size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
    squash = pre.get("resize_mode", "shortest") == "squash"
    resample = {"bicubic": 3, "bilinear": 2, "nearest": 0}.get(pre.get("interpolation", "bicubic"), 3)
    return {"image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor", "do_resize": True,
            "size": {"height": size, "width": size} if squash else {"shortest_edge": size}, "resample": resample,
            "do_center_crop": not squash, "crop_size": {"height": size, "width": size}, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(pre["mean"]),
            "image_std": list(pre["std"]), "do_convert_rgb": True}


def open_clip_geometry(pre: dict) -> str:
    """The geometric half of open_clip's eval transform, as torchvision code a transformers user can paste."""
    size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
    interp = f"InterpolationMode.{pre.get('interpolation', 'bicubic').upper()}"
    if pre.get("resize_mode", "shortest") == "squash":
        return f"Resize(({size}, {size}), interpolation={interp})(image.convert('RGB'))"
    return f"CenterCrop({size})(Resize({size}, interpolation={interp})(image.convert('RGB')))"


def hf_model_card(pre: dict) -> str:
    """``README.md`` of an HF copy: how to get open_clip's pixels from ``CLIPProcessor``.

    Why: ``preprocessor_config.json`` names the same steps, but CLIPProcessor's centre crop rounds its offset down
    where torchvision (open_clip) rounds half to even, so on some images the crop sits one pixel off, and it
    resizes uint8 tensors with torchvision rather than PIL. transformers has no setting for either; doing the
    geometric step first, the open_clip way, leaves the processor only rescaling and normalising.
    """
    return f"""# CLIP model written by edgeclip

Plain transformers loads it offline:

```python
from transformers import CLIPModel, CLIPProcessor
model, processor = CLIPModel.from_pretrained(FOLDER), CLIPProcessor.from_pretrained(FOLDER)
```

## Same pixels as open_clip

The model was trained and checked on open_clip's eval transform. `CLIPProcessor` names the same steps
(`preprocessor_config.json`) but does not give the same pixels on every image:

- its centre crop rounds the offset down; torchvision, which open_clip uses, rounds half to even. When the
  resized long side exceeds the crop by 3 (mod 4) pixels, the crop sits one pixel off: a visible shift at small
  input sizes;
- it resizes a uint8 tensor with torchvision instead of the PIL image with PIL: up to 2/255 per pixel.

For open_clip's pixels, do the geometric step on the PIL image first; the processor then only rescales and
normalises:

```python
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
square = {open_clip_geometry(pre)}
inputs = processor(images=square, return_tensors="pt")
```
"""


def check_hf_tokenizer(folder: Path, vocab_size: int) -> None:
    """edgeclip tokenizes with CLIP's BPE: refuse a folder whose tokenizer is another one (its ids would index
    the wrong rows of the token embedding, or past its end)."""
    from .towers import CLIP_BPE_VOCAB
    if vocab_size != CLIP_BPE_VOCAB:
        raise ConfigError(f"HF folder {str(folder)!r} has a text vocabulary of {vocab_size} tokens, not CLIP's BPE "
                          f"({CLIP_BPE_VOCAB}); edgeclip only handles CLIP-tokenized models")
    vf = folder / "vocab.json"
    if vf.is_file():
        try:
            theirs = json.loads(vf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read {str(vf)!r}: {e}") from None
        ours = clip_bpe_vocab()[0]
        if {k: v for k, v in theirs.items() if v < SOT} != {k: v for k, v in ours.items() if v < SOT}:
            raise ConfigError(f"{str(vf)!r} is not CLIP's BPE vocabulary; edgeclip only handles CLIP-tokenized models")
