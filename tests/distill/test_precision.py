"""--precision / --device are checked before anything is loaded or written (the GPU path itself needs a GPU)."""
import pytest
import torch

from edgeclip.distill import compress
from edgeclip.errors import ConfigError

TARGET = {"image": 60_000, "text": 60_000}


@pytest.mark.parametrize("kw,msg", [({"precision": "fp8"}, "unknown precision"),
                                    ({"device": "tpu"}, "unknown device"),
                                    ({"device": "cuda:x"}, "unknown device"),
                                    ({"workers": -1}, "workers")])
def test_bad_precision_device_workers_fail_before_writing(tmp_path, tiny_model, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        compress(tiny_model, TARGET, data="shapes:64", stages=1, out=tmp_path / "run", **kw)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_half_precision_needs_cuda(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="CUDA"):
        compress(tiny_model, TARGET, data="shapes:64", stages=1, precision="bf16", out=tmp_path / "run")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_compress_on_cuda(tmp_path, tiny_model, precision):
    res = compress(tiny_model, TARGET, data="shapes:64", steps=4, batch_size=16, stages=1, device="cuda",
                   precision=precision, workers=0, evaluate=False, out=tmp_path / "run")
    assert all(torch.isfinite(torch.tensor(s["final_loss"])) for s in res.report["stages"])
