"""One optimisation step, the learning-rate schedule, and the loss window between two log lines."""

import time

import torch
from torch import nn

from contextrast_cli.train.objective import Objective, sum_losses


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  labels: torch.Tensor, autocast, criterion: nn.Module | None = None, *,
                  objective: nn.Module | None = None, contrast: bool = True,
                  scaler: torch.amp.GradScaler | None = None) -> dict[str, torch.Tensor]:
    """One optimisation step: forward, the named loss terms, backward, SGD update.

    Args:
        images: (B, 3, H, W) RGB in [0, 1] on the model's device; labels (B, H, W).
        autocast: a context-manager factory (the Runtime's precision policy).
        criterion: the contrastive loss (``contrast.criterion.build_criterion``), or None for
            cross-entropy only.
        objective: what computes the terms, when not ``Objective(model, criterion)`` itself (the
            trainer passes it wrapped in DistributedDataParallel).
        contrast: include the contrastive terms (off during ``contrast.warmup_iters``).
        scaler: float16 training: the loss is scaled for the backward, the step skipped when a
            gradient is not finite (``torch.amp.GradScaler``).

    Returns:
        ``loss`` and every term, detached (no host synchronisation).
    """
    objective = objective if objective is not None else Objective(model, criterion)
    with autocast():
        terms = objective(images, labels, contrast)
    loss = sum_losses(terms)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


def poly_factor(iterations: int, power: float, warmup: int):
    """lr multiplier at step ``it``: linear warm-up times ``(1 - it/iterations) ** power``."""

    def factor(it: int) -> float:
        poly = max(0.0, 1.0 - it / iterations) ** power
        return poly * min(1.0, (it + 1) / warmup) if warmup else poly

    return factor


class LossWindow:
    """Loss terms accumulated on the device between log steps (one host sync per log), each with
    the number of steps it took part in (a term switching on mid-window is averaged over its own
    steps), and for every loss term the first iteration at which it was not finite."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps: dict[str, int] = {}  # per term: the steps of this window it was in
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
            self.steps[key] = self.steps.get(key, 0) + 1
        self.count += 1

    def non_finite(self, reduce=None) -> tuple[int, list[str]] | None:
        """(the first iteration with a non-finite loss term, the terms non-finite there), or None.

        Args:
            reduce: combines the processes' first iterations (element-wise minimum), so that every
                process reaches the same verdict.
        """
        if self.first_bad is None:
            return None
        first = self.first_bad
        if reduce is not None:
            never = torch.iinfo(torch.long).max
            first = reduce(torch.where(first < 0, never, first))
            first = torch.where(first == never, -1, first)
        first_bad = dict(zip(self.keys, first.tolist()))
        bad = [it for it in first_bad.values() if it >= 0]
        if not bad:
            return None
        return min(bad), [k for k, it in first_bad.items() if it == min(bad)]

    def flush(self, reduce=None) -> dict:
        """The mean of every term over the steps it took part in, and the speed since the last
        flush; starts a new window (the first non-finite iterations are kept).

        Args:
            reduce: maps this process's means (one tensor) to the means over every process.
        """
        elapsed = time.perf_counter() - self.started
        keys = list(self.sums)
        means = torch.stack([torch.as_tensor(self.sums[k]).float() / self.steps[k] for k in keys])
        if reduce is not None:
            means = reduce(means)
        stats = dict(zip(keys, means.tolist()))  # one host synchronisation for all terms
        stats["it_per_s"] = self.count / max(elapsed, 1e-9)
        self.sums, self.steps, self.count, self.started = {}, {}, 0, time.perf_counter()
        return stats
