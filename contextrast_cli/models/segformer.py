"""SegFormer (Xie et al., NeurIPS 2021): a Mix Transformer (MiT) encoder and the all-MLP decoder.

The encoder is Hugging Face ``transformers.SegformerModel`` built from its ``SegformerConfig``
(MiT-B0: hidden sizes 32, 64, 160, 256; MiT-B1: 64, 128, 320, 512; depths 2, 2, 2, 2 for
both); its four stage outputs (strides 4, 8, 16, 32) are the taps. The decoder follows the
paper and mmsegmentation's ``SegformerHead``: per stage a linear layer (1x1 convolution) to the
embedding width (256 for B0/B1), upsampled to stride 4, concatenated, fused by a 1x1
conv-BN-ReLU, dropout 0.1, then a 1x1 classifier.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.errors import ConfigError
from contextrast_cli.models.backbones import Backbone, load_backbone_weights
from contextrast_cli.models.layers import conv_bn_relu
from contextrast_cli.models.pretrained import segformer_encoder
from contextrast_cli.models.registry import MODELS
from contextrast_cli.models.segmentor import Segmentor

MIT = {
    "mit-b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2]},
    "mit-b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2]},
}
"""The MiT sizes (SegFormer's Table 6); heads 1, 2, 5, 8 and reduction ratios 8, 4, 2, 1 are
``SegformerConfig``'s defaults for both."""


class MiTEncoder(Backbone):
    """A MiT encoder; taps = the four stage outputs (B, C_i, ceil(H / s_i), ceil(W / s_i)).

    The first stage's attention reduces its keys with an 8x8 convolution of stride 8 on the
    stride-4 map, so inputs must be at least 32 pixels a side: the segmentor pads to a multiple
    of 32 (``size_divisor``) and crops back, as for HRNet.
    """

    size_divisor = 32

    def __init__(self, name: str, pretrained: bool, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        from transformers import SegformerConfig

        if name not in MIT:
            raise ConfigError(f"model.backbone: unknown SegFormer encoder {name!r}; choose one of: {', '.join(MIT)}")
        config = SegformerConfig(**MIT[name], drop_path_rate=drop_path_rate)
        self.body = segformer_encoder(name, config, pretrained)
        self.channels = list(config.hidden_sizes)
        self.strides = [4, 8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(pixel_values=x, output_hidden_states=True, return_dict=True).hidden_states)


class AllMLPHead(nn.Module):
    """SegFormer's decoder: per-stage linear embedding, upsample to stride 4, concat, fuse, classify."""

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels, kernel=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        embedded = [F.interpolate(embed(f), size=size, mode="bilinear", align_corners=False) if i else embed(f)
                    for i, (embed, f) in enumerate(zip(self.embed, features))]
        return self.classifier(self.dropout(self.fuse(torch.cat(embedded, 1))))


@MODELS.register("segformer")
def segformer(*, num_classes: int, backbone: str = "mit-b0", pretrained: bool = False,
              weights: Path | None = None, channels: int = 256, drop_path_rate: float = 0.1) -> Segmentor:
    """SegFormer on ``mit-b0`` or ``mit-b1`` (Hugging Face ``transformers``; ImageNet weights
    ``nvidia/mit-b0`` / ``nvidia/mit-b1``). Fixed strides 4-32, so no ``output_stride``.

    Args:
        channels: the decoder's embedding width (the paper's B0/B1: 256).
        drop_path_rate: the encoder's stochastic depth (mmsegmentation: 0.1).
    """
    body = MiTEncoder(backbone, pretrained, drop_path_rate)
    if weights is not None:
        load_backbone_weights(body, Path(weights))
    return Segmentor(body, AllMLPHead(body.channels, num_classes, channels), num_classes)
