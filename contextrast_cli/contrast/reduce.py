"""The loss's one collective: sums over the processes of a group, with their gradient (anchors
over the global batch under DDP), and the group to use."""

import torch
import torch.distributed as dist


def process_group():
    """The default process group when ``torch.distributed`` runs several processes, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


def global_sum(tensor: torch.Tensor, group) -> torch.Tensor:
    """``tensor`` summed over the processes of ``group``, differentiably: the backward sums the
    gradients of every process's loss (each process's loss reads the same global sum)."""
    return _GlobalSum.apply(tensor, group)


class _GlobalSum(torch.autograd.Function):
    """``dist.all_reduce`` with its adjoint (an all-reduce of the gradient). What
    ``torch.distributed.nn.functional.all_reduce`` does, which torch 2.14 deprecates in favour
    of a private module."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None
