"""The segmentor: backbone taps -> head -> logits at input size."""

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.models.backbones import Backbone


class Segmentor(nn.Module):
    """Encoder + decoder producing per-pixel class logits.

    ``forward`` returns ``{"out": logits (B, K, H, W)}`` at the input size and,
    in training mode, ``"features"``: the tapped encoder maps ``[F_1 .. F_I]``
    that the contrastive loss uses.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes

    @property
    def feature_channels(self) -> list[int]:
        return list(self.backbone.channels)

    @property
    def feature_strides(self) -> list[int]:
        return list(self.backbone.strides)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        features = self.backbone(x)
        logits = self.head(features)
        out = {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}
        if self.training:
            out["features"] = features
        return out
