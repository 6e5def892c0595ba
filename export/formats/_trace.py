"""What every device exporter traces: the two encoder modules and their batch-2 example inputs."""
from __future__ import annotations

import torch

from edgeclip.artifact import IMAGE_INPUT, TEXT_INPUT

from ..onnx_export import ImageEncoder, TextEncoder, example_inputs


def encoders(model) -> list[tuple[str, torch.nn.Module, torch.Tensor, str]]:
    """``[(tower, encoder module, example input, input name)]`` for the image and text towers, in eval mode."""
    from edgeclip.models.factory import model_config
    from edgeclip.models.towers import text_cfg, vision_cfg
    cfg = model_config(model)
    model = model.float().eval()
    pixels, ids = example_inputs(vision_cfg(cfg).size, text_cfg(cfg).context_length, text_cfg(cfg).vocab_size)
    return [("image", ImageEncoder(model).eval(), pixels, IMAGE_INPUT.name),
            ("text", TextEncoder(model).eval(), ids, TEXT_INPUT.name)]
