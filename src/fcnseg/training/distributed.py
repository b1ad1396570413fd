"""Process groups for `torchrun --nproc_per_node=N -m fcnseg train CONFIG`, on one node or many.

torchrun starts N copies of the same command with RANK, WORLD_SIZE and LOCAL_RANK set. Each
copy (a rank) trains on its own share of the training set through DistributedDataParallel,
which averages the gradients during backward, so that every rank holds the same weights:

    start()               join the group torchrun describes: NCCL for GPU tensors, gloo for
                          CPU ones (confusion matrices, loss sums); nothing in a plain process
    is_main()             rank 0, the only rank that writes files: the run folder, checkpoints,
                          history and report; the others wait at `barrier()` where they must
    sum_across_ranks()    confusion matrices and loss sums, added up over every rank
    evaluation_loader()   whole batches dealt round-robin, none repeated or padded, so that the
                          summed confusion matrix is exactly the single-process one

`data.batch_size` is per rank: the effective batch is batch_size x world size, and an epoch has
1/world-size as many steps. Resume with the same number of processes to continue exactly (the
learning-rate schedule counts steps). Without torchrun (WORLD_SIZE unset) every function here
reduces to the single-process case.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start() -> None:
    """Join the process group that torchrun's environment describes (once; else a no-op)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"  # CPU tensors (metrics) travel over gloo
    else:
        backend = "gloo"
    dist.init_process_group(backend)  # reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def end_worker(status: int) -> None:
    """Under torchrun, end this worker now, after flushing its output, skipping the
    interpreter's teardown; in a plain process, do nothing.

    In that teardown, after all work was done and the group destroyed, a C++ thread of the
    distributed runtime aborted the process ("terminate called without an active exception",
    SIGABRT) in about one run in five on CPU with gloo (torch 2.13), and torchrun then reported
    the whole job as failed. Every file fcnseg writes is closed (checkpoints synced) by then.
    """
    if not launched_by_torchrun():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    """This process's index on its own machine: which GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """A distributed run's GPU ranks each take the GPU torchrun assigned them (LOCAL_RANK)."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Replace `tensor` by its sum over all ranks, in place, and return it."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def value_of_main(value: float) -> float:
    """Rank 0's `value` on every rank: decisions such as 'out of time' must agree."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model for training: itself in one process, DistributedDataParallel in several.

    On GPUs batch norms become SyncBatchNorm first: segmentation batches per GPU are small, and
    statistics over the whole global batch are what a single large GPU would compute.
    """
    if world_size() <= 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """In order, in the single-process batches; rank r takes batches r, r + W, r + 2W, ...

    Unlike DistributedSampler, nothing is padded or repeated to even out the ranks, and each
    image is computed in the same batch as in one process, so that summed results are exact.
    """
    size = len(dataset)  # type: ignore[arg-type]
    batches = [
        list(range(start, min(start + batch_size, size))) for start in range(0, size, batch_size)
    ]
    return DataLoader(
        dataset, batch_sampler=batches[rank() :: world_size()], num_workers=num_workers
    )
