"""Projection heads pi_i: training-only modules owned by the trainer, never exported."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from contextrast_cli.config import ContrastConfig
from contextrast_cli.errors import ConfigError


class ProjectionHead(nn.Module):
    """Conv1x1(C -> h) - BN - ReLU - Conv1x1(h -> d), then L2 normalisation over channels.

    While training with gradients, the head's intermediate activations are not kept for
    the backward but recomputed from its input (activation checkpointing): the input is
    held by the network anyway, so the head adds only its output to the step's peak
    memory. The recomputation updates the BatchNorm running statistics a second time,
    which is harmless: the heads are dropped before inference.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return checkpoint(self._project, x, use_reentrant=False)
        return self._project(x)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def build_projectors(feature_channels: list[int], cfg: ContrastConfig) -> nn.ModuleList:
    """One head per used layer (``cfg.used_layers``: 1-based tap indices).

    Raises:
        ConfigError: a layer the network does not tap.
    """
    if max(cfg.layers) > len(feature_channels):
        raise ConfigError(f"contrast.layers: {list(cfg.layers)} but the network taps only "
                          f"{len(feature_channels)} layers (1..{len(feature_channels)})")
    return nn.ModuleList(
        ProjectionHead(feature_channels[i - 1], min(feature_channels[i - 1], cfg.hidden_cap), cfg.embed_dim)
        for i in cfg.used_layers)
