"""Run by the resume test: a small compress() of a seeded tiny teacher (killed and resumed by the test)."""
import sys

import torch

from edgeclip.distill import compress
from edgeclip.models import create_model

sys.path.insert(0, __file__.rsplit("/", 2)[0])  # tests/
from conftest import TINY_CFG  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    out, resume = sys.argv[1], sys.argv[2] == "resume"
    teacher = create_model(TINY_CFG, seed=0)
    compress(teacher, {"image": 60_000, "text": 60_000}, data="shapes:256", steps=int(sys.argv[3]), batch_size=32,
             out=out, resume=resume, ckpt_every=3, stages=1, evaluate=False, views=3)  # views: cached per view
