"""DeepLabV3 (Chen et al. 2017): ASPP on the deepest tap, torchvision's head."""

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from contextrast_cli.models.backbones import build_backbone
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


class DeepLabV3Head(nn.Module):
    """torchvision's DeepLabHead (ASPP + 3x3 conv + classifier) on the deepest tap."""

    def __init__(self, in_channels: int, num_classes: int, output_stride: int) -> None:
        super().__init__()
        self.head = DeepLabHead(in_channels, num_classes, ASPP_RATES[output_stride])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(features[-1])


@MODELS.register("deeplabv3")
def deeplabv3(*, num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: bool = False, weights=None) -> Segmentor:
    """DeepLabV3 on a dilated ResNet (resnet18/34 via timm, resnet50/101 via torchvision)."""
    body = build_backbone(backbone, output_stride, pretrained, weights)
    return Segmentor(body, DeepLabV3Head(body.channels[-1], num_classes, output_stride), num_classes)
