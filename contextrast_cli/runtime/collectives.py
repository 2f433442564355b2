"""What a training run does differently with several processes: DDP and SyncBatchNorm around
the network, agreement on when to stop, and the few values every process must share.

Every function here is a no-op (or the single-process answer) when ``runtime`` has one process,
so the trainer calls them unconditionally. Each one that communicates is a collective: every
process must call it at the same point of the run.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from contextrast_cli.runtime.device import Runtime


def sync_batchnorm(model: nn.Module, runtime: Runtime, enabled: bool) -> tuple[nn.Module, str | None]:
    """The network with SyncBatchNorm (GPUs, several processes, ``enabled``), and a note when
    it was asked for but cannot be had (the CPU: PyTorch's SyncBatchNorm needs CUDA)."""
    if not (enabled and runtime.distributed):
        return model, None
    if runtime.device.type != "cuda":
        return model, ("train.sync_bn: SyncBatchNorm needs GPUs (PyTorch has none for the CPU); BatchNorm "
                       "statistics stay per process")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), None


def data_parallel(module: nn.Module, runtime: Runtime, unused_parameters: bool) -> nn.Module:
    """``module`` in DistributedDataParallel (several processes), else itself.

    Args:
        unused_parameters: some steps leave parameters without a gradient (the projection heads
            during ``contrast.warmup_iters``): DDP then looks for them after each forward.
    """
    if not runtime.distributed:
        return module
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=unused_parameters)


def broadcast(value, runtime: Runtime):
    """Rank 0's ``value`` (any picklable object) on every process."""
    if not runtime.distributed:
        return value
    box = [value if runtime.is_main else None]
    dist.broadcast_object_list(box, src=0, group=runtime.host_group)
    return box[0]


def gather(value, runtime: Runtime) -> list:
    """Every process's ``value`` (picklable), in rank order, on every process."""
    if not runtime.distributed:
        return [value]
    values = [None] * runtime.world_size
    dist.all_gather_object(values, value, group=runtime.host_group)
    return values


def main_first(make, runtime: Runtime):
    """``make()`` on rank 0, then on the other processes: what rank 0 creates on the way (the
    synthetic scenes generated on first use, say) is there, whole, when the others look. A
    failure on rank 0 ends the run (torchrun stops the waiting processes)."""
    if runtime.is_main:
        value = make()
    barrier(runtime)
    if not runtime.is_main:
        value = make()
    return value


def barrier(runtime: Runtime) -> None:
    """Wait until every process got here (rank 0 finished writing a checkpoint, say)."""
    if runtime.distributed:
        dist.barrier(group=runtime.host_group)


def reduced(tensor: torch.Tensor, runtime: Runtime, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced element-wise over processes, ``op`` ``sum`` or ``min`` (a new tensor;
    no gradient)."""
    if not runtime.distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN}[op])
    return tensor


class StopVote:
    """Whether any process was asked to stop (a signal may reach only one), agreed by all
    without waiting: each step starts an asynchronous all-reduce of the requests over the
    host-side (gloo) group and reads the previous step's, which has long finished. Every
    process therefore stops after the same iteration, one step after the first request.
    Requests are signal numbers (0: none); the agreed one is the largest (SIGTERM over SIGINT).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.flag: torch.Tensor | None = None
        self.work = None

    def poll(self, signum: int) -> int:
        """Call once per step on every process; the agreed signal, 0 to go on."""
        if not self.runtime.distributed:
            return signum
        decided = self._result()
        self.flag = torch.tensor([signum], dtype=torch.int32)
        self.work = dist.all_reduce(self.flag, op=dist.ReduceOp.MAX, group=self.runtime.host_group,
                                    async_op=True)
        return decided

    def now(self, signum: int) -> int:
        """Agree at once (a blocking all-reduce; outside the step loop)."""
        if not self.runtime.distributed:
            return signum
        self._result()
        flag = torch.tensor([signum], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.runtime.host_group)
        return int(flag.item())

    def close(self) -> None:
        """Finish the vote in flight (before leaving the loop, or the process group)."""
        self._result()

    def _result(self) -> int:
        if self.work is None:
            return 0
        self.work.wait()
        self.work = None
        return int(self.flag.item())
