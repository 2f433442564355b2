"""The optimizer and learning-rate schedule of a run, built from ``optim`` (one place)."""

import torch
from torch import nn

from contextrast_cli.config import OptimConfig
from contextrast_cli.train.step import poly_factor


def parameter_groups(objective: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The decode head's parameters at ``lr * head_lr_mult``, all others at ``lr``; one group
    when the multiplier is 1 (the optimizer state of older runs keeps its layout)."""
    params = [p for p in objective.parameters() if p.requires_grad]
    if cfg.head_lr_mult == 1.0:
        return [{"params": params}]
    head = {id(p) for p in objective.model.head.parameters()}
    return [{"params": [p for p in params if id(p) not in head]},
            {"params": [p for p in params if id(p) in head], "lr": cfg.lr * cfg.head_lr_mult}]


def build_optimizer(objective: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW, as ``cfg.name`` says."""
    groups = parameter_groups(objective, cfg)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, iterations: int):
    """Warm-up then poly (``poly_power``) or linear decay to zero over ``iterations``."""
    power = 1.0 if cfg.schedule == "linear" else cfg.poly_power
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_factor(iterations, power, cfg.warmup_iters))
