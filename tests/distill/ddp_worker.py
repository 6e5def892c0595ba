"""Run by tests/distill/test_losses.py: one step of all four loss terms of a tiny student, under torchrun (2 ranks, gloo)
or alone (1 process, the doubled batch). Saves the mean loss and the (DDP-averaged) gradients."""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from edgeclip.distill.losses import Embeddings, distill_loss, gather_features


def main(out):
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    torch.manual_seed(0)
    student = torch.nn.Linear(16, 8)
    g = torch.Generator().manual_seed(1)
    x_img, x_txt = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    t_img, t_txt = F.normalize(torch.randn(8, 8, generator=g), dim=-1), F.normalize(torch.randn(8, 8, generator=g), dim=-1)
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    model = torch.nn.parallel.DistributedDataParallel(student) if world > 1 else student
    s_img, s_txt = F.normalize(model(x_img[rows]), dim=-1), F.normalize(model(x_txt[rows]), dim=-1)
    e = Embeddings(s_img, s_txt, s_img, s_txt, t_img[rows], t_txt[rows], s_img_all=gather_features(s_img, True),
                   s_txt_all=gather_features(s_txt, True), t_img_all=gather_features(t_img[rows], False),
                   t_txt_all=gather_features(t_txt[rows], False), offset=rank * (8 // world))
    out_terms = distill_loss({"affinity": 1, "feature": 2000, "icl": 0.5, "contrastive": 0.25}, e)
    out_terms["loss"].backward()
    loss = out_terms["loss"].detach()
    if world > 1:
        dist.all_reduce(loss)
        loss /= world
    if rank == 0:
        torch.save({"loss": loss.item(), "grads": {n: p.grad for n, p in student.named_parameters()}},
                   os.path.join(out, f"ws{world}.pt"))
    if world > 1:
        # Every rank waits until rank 0 has saved, then leaves at once: in CI (twice, never locally) the worker's
        # own destroy_process_group() while rank 0 was still saving ended with rank 0 aborting in gloo
        # ("terminate called without an active exception", SIGABRT); compress under torchrun, which leaves the
        # group to process exit, never did.
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
