"""One optimisation step, and the loss window between two log lines."""

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
    """Loss terms accumulated on the device between log steps (one host sync per log), and for
    every loss term the first iteration at which it was not finite."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.started = time.perf_counter()
        self.keys: list[str] = []  # the loss terms, in the order of ``first_bad``
        self.first_bad: torch.Tensor | None = None  # (len(keys),) int64, -1 while finite

    def add(self, iteration: int, terms: dict[str, torch.Tensor]) -> None:
        """Add the terms of step ``iteration`` (1-based), without a host synchronisation."""
        keys = [k for k in terms if k.startswith("loss")]
        if keys != self.keys:  # the contrastive terms join after contrast.warmup_iters
            known = dict(zip(self.keys, self.first_bad)) if self.first_bad is not None else {}
            none = terms["loss"].new_full((), -1, dtype=torch.long)
            self.first_bad, self.keys = torch.stack([known.get(k, none) for k in keys]), keys
        bad = ~torch.isfinite(torch.stack([terms[k].float() for k in keys]))
        self.first_bad = torch.where(bad & (self.first_bad < 0), iteration, self.first_bad)
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.count += 1

    def non_finite(self) -> tuple[int, list[str]] | None:
        """(the first iteration with a non-finite loss term, the terms non-finite there), or None."""
        if self.first_bad is None:
            return None
        first_bad = dict(zip(self.keys, self.first_bad.tolist()))
        bad = [it for it in first_bad.values() if it >= 0]
        if not bad:
            return None
        return min(bad), [k for k, it in first_bad.items() if it == min(bad)]

    def flush(self) -> dict:
        """The mean of every term and the speed since the last flush; starts a new window
        (the first non-finite iterations are kept)."""
        elapsed = time.perf_counter() - self.started
        stats = {key: float(value) / self.count for key, value in self.sums.items()}
        stats["it_per_s"] = self.count / max(elapsed, 1e-9)
        self.sums, self.count, self.started = {}, 0, time.perf_counter()
        return stats
