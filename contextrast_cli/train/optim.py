"""The optimizer and learning-rate schedule of a run, built from ``optim`` (one place)."""

import torch
from torch import nn

from contextrast_cli.config import OptimConfig
from contextrast_cli.train.step import poly_factor

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
POSITION_TABLES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed")


def no_decay_ids(objective: nn.Module) -> set[int]:
    """Parameters of normalisation layers and position tables (mmsegmentation's ``decay_mult=0``
    keys of its SegFormer and Swin configs: ``norm``, ``relative_position_bias_table``, ...)."""
    ids = {id(p) for m in objective.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    return ids | {id(p) for name, p in objective.named_parameters() if name.rpartition(".")[2] in POSITION_TABLES}


def parameter_groups(objective: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The decode head's parameters at ``lr * head_lr_mult``, the others at ``lr``; with
    ``no_decay_norms`` each split again into decayed and undecayed. One group when neither
    applies (the optimizer state of older runs keeps its layout)."""
    params = [p for p in objective.parameters() if p.requires_grad]
    head = {id(p) for p in objective.model.head.parameters()} if cfg.head_lr_mult != 1.0 else set()
    plain = no_decay_ids(objective) if cfg.no_decay_norms else set()
    if not head and not plain:
        return [{"params": params}]
    groups = []
    for in_head in (False, True):
        for decayed in (True, False):
            chosen = [p for p in params if (id(p) in head) == in_head and (id(p) not in plain) == decayed]
            if chosen:
                groups.append({"params": chosen, "lr": cfg.lr * (cfg.head_lr_mult if in_head else 1.0),
                               **({} if decayed else {"weight_decay": 0.0})})
    return groups


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
