"""HRNetV2 (Wang et al., TPAMI 2020): an HRNet backbone and the concatenate-all-branches head.

The head follows HRNetV2 for segmentation and mmsegmentation's FCNHead on HRNet:
every branch upsampled (bilinear) to the stride-4 branch, concatenated,
Conv1x1-BN-ReLU at the concatenated width (720 for W48), then a 1x1 classifier.
With ``hrnet_w48`` the network has 65.9M parameters (19 classes), as reported.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.models.backbones import build_hrnet_backbone
from contextrast_cli.models.layers import conv_bn_relu
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor


def concat_branches(features: list[torch.Tensor]) -> torch.Tensor:
    """HRNet branches (B, C_i, H/s_i, W/s_i) -> (B, sum C_i, H/4, W/4), bilinear upsampling."""
    size = features[0].shape[-2:]
    upsampled = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]]
    return torch.cat([features[0], *upsampled], 1)


class HRNetV2Head(nn.Module):
    """Concatenated branches -> Conv1x1-BN-ReLU (width = sum of branch channels) -> classifier."""

    def __init__(self, in_channels: list[int], num_classes: int) -> None:
        super().__init__()
        width = sum(in_channels)
        self.fuse = conv_bn_relu(width, width, kernel=1)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(concat_branches(features))

    def classify(self, fused: torch.Tensor) -> torch.Tensor:
        """Logits from already concatenated branches (B, sum C_i, H/4, W/4)."""
        return self.classifier(self.fuse(fused))


@MODELS.register("hrnet")
def hrnet(*, num_classes: int, backbone: str = "hrnet_w48", pretrained: bool = False,
          weights: Path | None = None) -> Segmentor:
    """HRNetV2 on ``hrnet_w48`` (the paper's), ``hrnet_w18`` or ``hrnet_w18_small_v2`` (timm).

    HRNet's branches have the fixed strides 4, 8, 16, 32, so it takes no ``output_stride``.
    Any input size works (padded to a multiple of 32 inside the segmentor).
    """
    body = build_hrnet_backbone(backbone, pretrained, weights)
    return Segmentor(body, HRNetV2Head(body.channels, num_classes), num_classes)
