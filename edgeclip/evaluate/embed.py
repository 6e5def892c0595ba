"""Normalised embeddings of a PyTorch CLIP (open_clip ``CLIP``), in batches with a progress bar.

The torch half of evaluation: ``metrics`` scores what these return (and what ``edgeclip.runtime`` returns).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["embed_images", "embed_texts", "embed_pil_images"]


def _batches(n: int, batch_size: int, desc: str):
    """Batch starts with a progress bar (stderr, erased when done)."""
    return tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False, mininterval=1)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_images(model, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Rendered images, uint8 [N, H, W, 3] already at the model's input size --> normalised [N, D]."""
    from ..data.transforms import to_tensor
    dev = _device(model)  # a model training on a GPU is scored where it is; the result is on the CPU
    return torch.cat([model.encode_image(to_tensor(images[i:i + batch_size]).to(dev), normalize=True).float().cpu()
                      for i in _batches(len(images), batch_size, "embed images")])


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Texts --> normalised [N, D], tokenized by ``tokenizer`` (``edgeclip.get_tokenizer(model)``)."""
    dev = _device(model)
    return torch.cat([model.encode_text(tokenizer(texts[i:i + batch_size]).to(dev), normalize=True).float().cpu()
                      for i in _batches(len(texts), batch_size, "embed texts")])


@torch.no_grad()
def embed_pil_images(model, images, batch_size: int = 64) -> torch.Tensor:
    """PIL images (any size) --> normalised [N, D] with the model's own eval preprocessing."""
    from ..models.io import image_transform, preprocess_cfg
    tf = image_transform(preprocess_cfg(model))
    return torch.cat([model.encode_image(torch.stack([tf(i) for i in images[j:j + batch_size]]), normalize=True)
                      for j in _batches(len(images), batch_size, "embed images")])
