"""What a training step minimises: the segmentation losses as pure functions returning named terms,
their sum, and ``Objective``, the network and its contrastive loss as the one module DDP wraps."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.contrast.reduce import process_group


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, group=None) -> torch.Tensor:
    """Mean pixel cross-entropy over non-ignored pixels, in float32.

    Args:
        logits: (B, K, H, W).
        target: (B, H, W) int64 train ids, ``IGNORE_INDEX`` ignored.
        group: a process group (data-parallel training): the mean is over the labelled pixels of
            every process's batch, each process's sum divided by the global count (one all-reduce
            of the count, no host sync) times the number of processes, so that DDP's average of
            the gradients is the gradient of one process holding the whole batch, however unevenly
            the ignored pixels fall.

    Returns:
        A scalar; 0 (with a gradient path) when every pixel is ignored.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (target != IGNORE_INDEX).sum()
    if group is not None:
        count = count.clone()
        dist.all_reduce(count, group=group)
        return total / count.clamp_min(1) * dist.get_world_size(group)
    return total / count.clamp_min(1)


def segmentation_losses(outputs: dict, target: torch.Tensor, group=None) -> dict[str, torch.Tensor]:
    """The supervised terms of a segmentor's outputs: ``{"loss_ce": ...}``.

    A segmentor with an auxiliary head (OCRNet, training mode) also returns
    ``"aux"`` logits and their weight ``"aux_weight"`` (paper: 0.4); this adds
    ``loss_aux = aux_weight * CE(aux)``. ``group``: see ``cross_entropy``.
    """
    terms = {"loss_ce": cross_entropy(outputs["out"], target, group)}
    if "aux" in outputs:
        terms["loss_aux"] = outputs["aux_weight"] * cross_entropy(outputs["aux"], target, group)
    return terms


def sum_losses(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the ``loss_*`` entries of a loss's terms (the rest are diagnostics, detached)."""
    losses = [value for key, value in terms.items() if key.startswith("loss_")]
    if not losses:
        raise ValueError(f"no loss_* entry among the terms ({', '.join(terms) or 'none'})")
    return sum(losses[1:], losses[0])


class Objective(nn.Module):
    """The network and its training-only contrastive loss as one module, called as
    ``terms = objective(images, labels, contrast)``: what DistributedDataParallel wraps, so the
    projection heads' gradients are averaged over processes with the network's.

    Args:
        model: the segmentor (``outputs["out"]``, ``outputs["features"]``).
        criterion: the contrastive loss (``contrast.criterion.build_criterion``), or None.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module | None = None) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, images: torch.Tensor, labels: torch.Tensor, contrast: bool = True) -> dict[str, torch.Tensor]:
        outputs = self.model(images)
        terms = segmentation_losses(outputs, labels, process_group())
        if contrast and self.criterion is not None:
            terms.update(self.criterion(outputs["features"], outputs["out"], labels))
        return terms
