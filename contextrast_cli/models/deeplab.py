"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al. 2018) heads over tapped backbones."""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from contextrast_cli.models.backbones import build_backbone
from contextrast_cli.models.layers import conv_bn_relu
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


class DeepLabV3Head(nn.Module):
    """torchvision's ASPP on the deepest tap, then 3x3 conv-BN-ReLU and a classifier
    (the layout of torchvision's DeepLabHead, with a configurable width)."""

    def __init__(self, in_channels: int, num_classes: int, output_stride: int, channels: int = 256) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, list(ASPP_RATES[output_stride]), channels)
        self.fuse = conv_bn_relu(channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.fuse(self.aspp(features[-1])))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the deepest tap, upsampled and fused with the stride-4 tap (48-channel projection)."""

    def __init__(self, in_channels: list[int], num_classes: int, output_stride: int, channels: int = 256) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels[-1], list(ASPP_RATES[output_stride]), channels)
        self.low = conv_bn_relu(in_channels[0], 48, kernel=1)
        self.fuse = nn.Sequential(conv_bn_relu(channels + 48, channels), conv_bn_relu(channels, channels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low(features[0])
        deep = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([deep, low], 1)))


@MODELS.register("deeplabv3")
def deeplabv3(*, num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: bool = False, weights=None, channels: int = 256) -> Segmentor:
    """DeepLabV3 on a dilated ResNet (resnet18/34 via timm, resnet50/101 via torchvision)."""
    body = build_backbone(backbone, output_stride, pretrained, weights)
    return Segmentor(body, DeepLabV3Head(body.channels[-1], num_classes, output_stride, channels), num_classes)


@MODELS.register("deeplabv3plus")
def deeplabv3plus(*, num_classes: int, backbone: str = "resnet101", output_stride: int = 16,
                  pretrained: bool = False, weights=None, channels: int = 256) -> Segmentor:
    """DeepLabV3+ : DeepLabV3 plus a light decoder on the stride-4 tap (sharper boundaries)."""
    body = build_backbone(backbone, output_stride, pretrained, weights)
    return Segmentor(body, DeepLabV3PlusHead(body.channels, num_classes, output_stride, channels), num_classes)
