"""JPEG decode + resize + crop + normalise on the GPU (``compress --decode gpu``, CUDA only).

Why: at scale, CPU decoding of full-size JPEGs limits the step rate. With ``--decode gpu`` the DataLoader workers
only read tar members and hand the raw bytes over; the training process decodes a whole batch with nvjpeg
(``torchvision.io.decode_jpeg(..., device="cuda")``) and applies the student's eval transform (resize of the
shortest side, centre crop, normalise) as tensor ops on the GPU.

UNVERIFIED ON A GPU: written on a machine without one. Tested: the refusal without CUDA, the parameter extraction,
and the whole loader path with ``device="cpu"`` (torchvision's CPU decoder stands in for nvjpeg; pixels match the
CPU transform). torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec.
An image nvjpeg cannot decode is retried on the CPU (PNG/WebP, CMYK JPEGs), and dropped and counted as
"corrupt image" if that fails too, so a batch can come out smaller than asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .skips import SkipCounter


@dataclass(frozen=True)
class GpuTransform:
    """The numbers of an eval transform that the GPU path reproduces."""
    size: int
    mean: tuple
    std: tuple
    bicubic: bool = True


def gpu_transform_of(tf) -> GpuTransform:
    """Read size / mean / std from a torchvision ``Compose`` (open_clip's eval transform); one line if unknown."""
    from torchvision import transforms as T
    size = mean = std = None
    bicubic = True
    for t in getattr(tf, "transforms", []):
        if isinstance(t, T.Normalize):
            mean, std = tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
        elif isinstance(t, T.CenterCrop):
            size = int(t.size[0] if isinstance(t.size, (tuple, list)) else t.size)
        elif isinstance(t, T.Resize):
            bicubic = t.interpolation == T.InterpolationMode.BICUBIC
            if size is None:
                s = t.size
                size = int(s[0] if isinstance(s, (tuple, list)) else s)
    if size is None or mean is None:
        raise ConfigError("--decode gpu needs the student's transform to be resize + centre crop + normalise "
                          f"(open_clip's eval transform); got {tf!r:.120}")
    return GpuTransform(size, mean, std, bicubic)


def check_gpu_decode(decode: str, device: str) -> str:
    """``cpu`` anywhere; ``gpu`` only with a CUDA device that is present (one line otherwise)."""
    if decode not in ("cpu", "gpu"):
        raise ConfigError(f"decode must be 'cpu' or 'gpu', got {decode!r}")
    if decode == "gpu" and not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise ConfigError(f"--decode gpu decodes JPEGs with nvjpeg and needs --device cuda and a CUDA GPU; this "
                          f"run is on {device!r}{'' if torch.cuda.is_available() else ' with no GPU visible'}; "
                          "use --decode cpu")
    return decode


def _decode_one_cpu(blob: torch.Tensor, device) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    return decode_image(blob, mode=ImageReadMode.RGB).to(device, non_blocking=True)


def decode_batch(blobs: list[bytes], spec: GpuTransform, device, skipped: SkipCounter) -> tuple[torch.Tensor, list]:
    """Raw image bytes -> (normalised float [N, 3, S, S] on ``device``, indices of the images kept)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:  # one batched nvjpeg call in the common case
        imgs = list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        imgs = []
        for d in data:
            try:
                imgs.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                try:
                    imgs.append(_decode_one_cpu(d, device))
                except RuntimeError:
                    skipped.add("corrupt image")
                    imgs.append(None)
    interp = F.InterpolationMode.BICUBIC if spec.bicubic else F.InterpolationMode.BILINEAR
    out, kept = [], []
    for i, im in enumerate(imgs):
        if im is None:
            continue
        im = F.resize(im, [spec.size], interpolation=interp, antialias=True)
        im = F.center_crop(im, [spec.size, spec.size])
        out.append(im)
        kept.append(i)
    if not out:
        return torch.empty(0, 3, spec.size, spec.size, device=device), kept
    x = torch.stack(out).float().div_(255)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std, kept
