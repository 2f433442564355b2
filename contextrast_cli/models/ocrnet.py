"""OCRNet (Yuan et al., ECCV 2020) on HRNet, laid out as mmsegmentation's FCNHead + OCRHead.

1. Soft object regions: an HRNetV2 head (the auxiliary head) gives K region logits.
2. Object-region representations: per class, the features averaged with a spatial
   softmax of its region logits (mmseg's SpatialGatherModule).
3. Object contextual attention: each pixel attends over the K region
   representations (key/query channels ``key_channels``, scaled dot product),
   the context is concatenated with the pixel features, Conv1x1-BN-ReLU, classifier.

The auxiliary head is part of inference (its logits are the soft regions); in
training mode its logits are also returned as ``"aux"`` and supervised with weight
``aux_weight`` (0.4, as in the paper and mmseg). Pixels of the zero padding that
HRNet needs (sizes to multiples of 32) take part in the gathering.
"""

from pathlib import Path

import torch
from torch import nn

from contextrast_cli.models.backbones import build_hrnet_backbone
from contextrast_cli.models.layers import conv_bn_relu
from contextrast_cli.models.hrnet import HRNetV2Head, concat_branches
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor

AUX_WEIGHT = 0.4


def object_regions(feats: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
    """feats (B, C, H, W), region logits (B, K, H, W) -> region representations (B, K, C)."""
    weights = region_logits.flatten(2).float().softmax(-1).to(feats.dtype)  # (B, K, HW), spatial softmax
    return weights @ feats.flatten(2).transpose(1, 2)


class ObjectContext(nn.Module):
    """Pixel-region attention (mmseg's ObjectAttentionBlock, scale 1) and the fusing bottleneck."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.query = nn.Sequential(conv_bn_relu(channels, key_channels, 1), conv_bn_relu(key_channels, key_channels, 1))
        self.key = nn.Sequential(conv_bn_relu(channels, key_channels, 1), conv_bn_relu(key_channels, key_channels, 1))
        self.value = conv_bn_relu(channels, key_channels, 1)
        self.project = conv_bn_relu(key_channels, channels, 1)
        self.fuse = conv_bn_relu(2 * channels, channels, 1)

    def forward(self, feats: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """feats (B, C, H, W), regions (B, K, C) -> object-contextual features (B, C, H, W)."""
        b, _, h, w = feats.shape
        regions = regions.transpose(1, 2).unsqueeze(-1)  # (B, C, K, 1)
        query = self.query(feats).flatten(2).transpose(1, 2)  # (B, HW, D)
        key = self.key(regions).flatten(2)  # (B, D, K)
        value = self.value(regions).flatten(2).transpose(1, 2)  # (B, K, D)
        attention = (query @ key * key.shape[1] ** -0.5).softmax(-1)  # (B, HW, K)
        context = (attention @ value).transpose(1, 2).reshape(b, -1, h, w)  # (B, D, H, W)
        return self.fuse(torch.cat([self.project(context), feats], 1))


class OCRHead(nn.Module):
    """Auxiliary HRNetV2 head (soft regions) + Conv3x3 bottleneck + object context + classifier."""

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512, key_channels: int = 256) -> None:
        super().__init__()
        self.aux_head = HRNetV2Head(in_channels, num_classes)
        self.bottleneck = conv_bn_relu(sum(in_channels), channels, 3)
        self.context = ObjectContext(channels, key_channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        fused = concat_branches(features)  # (B, sum C_i, H/4, W/4)
        aux = self.aux_head.classify(fused)
        feats = self.bottleneck(fused)
        out = self.classifier(self.context(feats, object_regions(feats, aux)))
        return {"out": out, "aux": aux}


@MODELS.register("ocrnet")
def ocrnet(*, num_classes: int, backbone: str = "hrnet_w48", pretrained: bool = False,
           weights: Path | None = None, channels: int = 512,
           key_channels: int = 256, aux_weight: float = AUX_WEIGHT) -> Segmentor:
    """OCRNet on an HRNet backbone (see ``hrnet``: fixed strides, no ``output_stride``).

    Args:
        channels: OCR width (mmseg's HRNet-W48 config: 512).
        key_channels: query/key/value width of the attention (mmseg's ``ocr_channels``: 256).
        aux_weight: weight of the auxiliary cross-entropy, ``loss_aux`` (paper: 0.4).
    """
    body = build_hrnet_backbone(backbone, pretrained, weights)
    head = OCRHead(body.channels, num_classes, channels, key_channels)
    return Segmentor(body, head, num_classes, aux_weight=aux_weight)
