"""One optimisation step, and the loss window between two log lines."""

import math
import time

import torch
from torch import nn

from contextrast_cli.engine.losses import segmentation_losses


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  labels: torch.Tensor, autocast, criterion: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """One optimisation step: forward, the named loss terms, backward, SGD update.

    Args:
        images: (B, 3, H, W) RGB in [0, 1] on the model's device; labels (B, H, W).
        autocast: a context-manager factory (the Runtime's precision policy).
        criterion: the contrastive loss (``contrast.build.build_criterion``), or None for
            cross-entropy only.

    Returns:
        ``loss`` and every term, detached (no host synchronisation).
    """
    with autocast():
        outputs = model(images)
        terms = segmentation_losses(outputs, labels)
        if criterion is not None:
            terms.update(criterion(outputs["features"], outputs["out"], labels))
    loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


class LossWindow:
    """Loss terms accumulated on the device between log steps (one host sync per log), and the
    first iteration whose loss terms were not all finite."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.first_bad: torch.Tensor | None = None  # () int64, -1 while every step was finite
        self.started = time.perf_counter()

    def add(self, iteration: int, terms: dict[str, torch.Tensor]) -> None:
        """Add the terms of step ``iteration`` (1-based)."""
        losses = torch.stack([v.float() for k, v in terms.items() if k.startswith("loss")])
        bad = ~torch.isfinite(losses).all()
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=losses.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), iteration, self.first_bad)
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.count += 1

    def non_finite(self) -> tuple[int, list[str]] | None:
        """(first bad iteration, the loss terms that are not finite in the window), or None."""
        if self.first_bad is None or int(self.first_bad) < 0:
            return None
        bad = [k for k, v in self.sums.items() if k.startswith("loss") and not math.isfinite(float(v))]
        return int(self.first_bad), bad

    def flush(self) -> dict:
        """The mean of every term and the speed since the last flush; starts a new window
        (the first bad iteration is kept)."""
        elapsed = time.perf_counter() - self.started
        stats = {key: float(value) / self.count for key, value in self.sums.items()}
        stats["it_per_s"] = self.count / max(elapsed, 1e-9)
        self.sums, self.count, self.started = {}, 0, time.perf_counter()
        return stats
