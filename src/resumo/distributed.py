"""Where this process stands in a torchrun world, and how the configured batch splits over it.

The ground floor under training and its launchers: `resumo.train` asks it for the
world size and whether it is rank 0, `resumo.launch` and `resumo.trainjob` refuse a
global batch that does not split before any process starts. It reads only the
environment torchrun (or a TrainJob's torchrun) sets.
"""

from __future__ import annotations

import os

from resumo.errors import ConfigError


def under_torchrun() -> bool:
    """torchrun (or a TrainJob's torchrun) started this process: it is one rank of a world."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1


def is_main() -> bool:
    """Rank 0 of the world (of every node): the one process that writes outputs and prints metric lines."""
    return not under_torchrun() or int(os.environ.get("RANK", "0")) == 0


def split_batch(batch_size: int, gradient_accumulation: int, processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that give `batch_size x gradient_accumulation` examples
    per optimizer step over `processes` processes.

    Each process takes global / processes examples per step, in micro-batches of
    the largest size that divides its share and is at most `batch_size`: the
    configured micro-batch fits in memory, so a smaller one does too. 16 x 4 on 2
    GPUs is 16 x 2 each; on 8 GPUs, 8 x 1 each.
    """
    global_batch = batch_size * gradient_accumulation
    if global_batch % processes:
        raise ConfigError(
            f"train.batch_size x train.gradient_accumulation = {batch_size} x {gradient_accumulation} = {global_batch} examples per optimizer step "
            f"do not split over {processes} processes; run a number of processes that divides {global_batch} (--nproc-per-node, train.nproc_per_node) "
            f"or set a global batch that {processes} divides"
        )
    share = global_batch // processes
    per_device = max(b for b in range(1, min(batch_size, share) + 1) if share % b == 0)
    return per_device, share // per_device
