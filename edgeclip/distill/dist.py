"""torchrun support: the process group from the environment, rank helpers, and clear errors when a rank dies.

Launch: ``torchrun --nproc_per_node N -m edgeclip.cli compress ...`` (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT). gloo on CPU, nccl on CUDA (``EDGECLIP_DIST_BACKEND=gloo`` forces gloo, e.g. two ranks on one
GPU). Every collective has a timeout, so a rank that hangs or dies makes
the others exit with one line instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import datetime
import os

import torch

from ..errors import ConfigError, EdgeClipError

PEER_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "broken pipe", "socket")
TIMEOUT_S = int(os.environ.get("EDGECLIP_DIST_TIMEOUT", "600"))


class DistributedError(EdgeClipError):
    """Another rank died or stopped answering (torchrun / process-group failure)."""


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes; returns this rank's device (``cuda:LOCAL_RANK`` on CUDA).

    A no-op outside torchrun (WORLD_SIZE unset or 1). nccl without a GPU is refused in one line.
    """
    import torch.distributed as dist
    if env_world() <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    cuda = str(device).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ConfigError(f"torchrun with device {device!r} needs nccl and a CUDA GPU, and none is available; "
                          "use --device cpu (gloo)")
    backend = os.environ.get("EDGECLIP_DIST_BACKEND") or ("nccl" if cuda else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ConfigError(f"EDGECLIP_DIST_BACKEND={backend!r}: use nccl or gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "gloo":  # ranks may share a GPU (benchmarks/gpu_check.py); nccl wants one rank per GPU
            local %= torch.cuda.device_count()
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    except Exception as e:
        raise DistributedError(f"cannot join the process group (rank {os.environ.get('RANK')}): "
                               f"{str(e).splitlines()[0][:200]}") from None
    return device


def rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    import torch.distributed as dist
    if world() > 1:
        with guard("barrier"):
            dist.barrier()


@contextlib.contextmanager
def guard(where: str):
    """Turn a collective's failure (peer died, timeout) into one line naming this rank and the way out."""
    import torch.distributed as dist
    if world() <= 1:
        yield
        return
    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        if not isinstance(e, dist.DistError) and not any(w in str(e).lower() for w in PEER_WORDS):
            raise  # an ordinary bug keeps its traceback
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DistributedError(f"rank {rank()}: another rank died or stopped answering during {where} "
                               f"({msg}); rerun with --resume to continue from the last checkpoint") from None


def shutdown() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` that exists here; anything else is one ``ConfigError`` line."""
    from ..limits import check_device_name
    d = check_device_name(device)
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    if d.startswith("cuda:") and int(d[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device {d!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return d
