"""UPerNet (Xiao et al., ECCV 2018) on a Swin Transformer (Liu et al., ICCV 2021), as
mmsegmentation's ``upernet_swin`` configs lay it out.

The encoder is timm's Swin with ``features_only`` (its NHWC stage outputs permuted to NCHW):
taps at strides 4, 8, 16, 32 with 96, 192, 384, 768 channels for Swin-T. The head is
mmsegmentation's ``UPerHead``, written here since no library provides it:

1. PPM on the deepest tap: adaptive average pooling to 1x1, 2x2, 3x3, 6x6, each a 1x1
   conv-BN-ReLU, upsampled back, concatenated with the input, 3x3 conv-BN-ReLU (``channels``).
2. FPN: 1x1 conv-BN-ReLU laterals on the other taps, top-down sums (bilinear upsampling),
   a 3x3 conv-BN-ReLU on each summed level, all levels upsampled to stride 4, concatenated,
   a 3x3 conv-BN-ReLU, dropout 0.1, a 1x1 classifier.

mmsegmentation also trains an auxiliary FCN head on the third stage (weight 0.4); it is not
built here (every registered network's parameters are all used at inference).
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.errors import ConfigError
from contextrast_cli.models.backbones import Backbone, load_backbone_weights
from contextrast_cli.models.layers import conv_bn_relu
from contextrast_cli.models.pretrained import timm_encoder
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor

SWINS = ("swin_tiny_patch4_window7_224",)
POOL_SCALES = (1, 2, 3, 6)


class SwinEncoder(Backbone):
    """A timm Swin; taps = the four stage outputs in NCHW.

    ``strict_img_size=False`` lets timm pad each stage to whole windows and compute the shifted
    windows' attention mask for the size at hand, so any input size works; the segmentor pads
    inputs to a multiple of 32 (``size_divisor``) so that every stage halves exactly.
    """

    size_divisor = 32
    fixed_size_export = ("timm's Swin computes its window padding and shifted-window attention mask from the "
                         "input size in Python, so torch.export specialises the graph to the traced size")

    def __init__(self, name: str, pretrained: bool, img_size: Sequence[int], depths: Sequence[int] | None) -> None:
        super().__init__()
        if name not in SWINS:
            raise ConfigError(f"model.backbone: unknown Swin backbone {name!r}; choose one of: {', '.join(SWINS)}")
        extra = {"depths": tuple(depths)} if depths else {}
        self.body = timm_encoder(name, pretrained, features_only=True, out_indices=(0, 1, 2, 3),
                                 img_size=tuple(img_size), strict_img_size=False, **extra)
        self.channels = list(self.body.feature_info.channels())
        self.strides = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.permute(0, 3, 1, 2) for f in self.body(x)]  # timm's Swin stages are (B, H, W, C)


class PPM(nn.Module):
    """Pyramid pooling on (B, C, H, W): the input and its pooled-and-upsampled pyramid, fused."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int] = POOL_SCALES) -> None:
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels, channels, 1))
                                    for s in scales)
        self.bottleneck = conv_bn_relu(in_channels + len(scales) * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], 1))


class UPerHead(nn.Module):
    """mmsegmentation's UPerHead: PPM on the deepest tap, FPN over all four, fused at stride 4."""

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.ppm = PPM(in_channels[-1], channels)
        self.laterals = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(f) for lateral, f in zip(self.laterals, features)] + [self.ppm(features[-1])]
        for i in range(len(levels) - 1, 0, -1):  # top-down
            levels[i - 1] = levels[i - 1] + resize(levels[i], levels[i - 1])
        outs = [fpn(level) for fpn, level in zip(self.fpn, levels)] + [levels[-1]]
        fused = torch.cat([outs[0], *(resize(o, outs[0]) for o in outs[1:])], 1)
        return self.classifier(self.dropout(self.fuse(fused)))


def resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the height and width of ``like``."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@MODELS.register("upernet")
def upernet(*, num_classes: int, backbone: str = "swin_tiny_patch4_window7_224", pretrained: bool = False,
            weights: Path | None = None, channels: int = 512, img_size: Sequence[int] = (512, 1024),
            depths: Sequence[int] | None = None) -> Segmentor:
    """UPerNet on Swin-T (timm). Fixed strides 4-32, so no ``output_stride``.

    Args:
        channels: the head's width (mmsegmentation: 512).
        img_size: the size timm's Swin is built for (the preset's crop); other sizes work too.
        depths: blocks per stage (Swin-T: 2, 2, 6, 2); smaller for quick tests.
    """
    body = SwinEncoder(backbone, pretrained, img_size, depths)
    if weights is not None:
        load_backbone_weights(body, Path(weights))
    return Segmentor(body, UPerHead(body.channels, num_classes, channels), num_classes)
