"""One rank of tests/gpu/test_gpu.py's DDP test: train the tiny model under torchrun on NCCL, compare ranks.

Run as `python -m torch.distributed.run --standalone --nproc-per-node 2 tests/gpu/ddp_worker.py OUT`.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tests.gpu.test_gpu import _trainer


def main(out: Path) -> None:
    # batch 4 x 1 over 2 ranks: 2 per rank; resumo.launch.split_batch keeps the global batch
    trainer = _trainer(out / f"rank{os.environ['RANK']}")
    trainer.train()
    backend = dist.get_backend()
    weights = torch.cat([p.detach().float().flatten().cpu() for _, p in sorted(trainer.model.named_parameters()) if p.requires_grad])
    digest = hashlib.sha256(weights.numpy().tobytes()).hexdigest()
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if dist.get_rank() == 0:
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        result = {"backend": backend, "world_size": dist.get_world_size(), "global_step": trainer.state.global_step, "losses": losses, "checksums": digests}
        (out / "ddp.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
