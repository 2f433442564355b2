"""The segmentor: normalisation -> backbone taps -> head -> logits at input size."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.models.backbones import Backbone


class Segmentor(nn.Module):
    """Encoder + decoder producing per-pixel class logits from RGB images in [0, 1].

    The input normalisation belongs to the model (as detectron2's ``pixel_mean`` /
    ``pixel_std``): the buffers ``pixel_mean`` and ``pixel_std`` (RGB, [0, 1] units, saved in
    the state dict) are applied first, so training, evaluation, export and visualisation
    cannot disagree about it.

    ``forward`` returns ``{"out": logits (B, K, H, W)}`` at the input size and,
    in training mode, ``"features"``: the tapped encoder maps ``[F_1 .. F_I]``
    that the contrastive loss uses, F_i of size ceil(H / s_i) x ceil(W / s_i).

    A head returns logits, or a dict ``{"out": ..., "aux": ...}`` when it has an
    auxiliary classifier (OCRNet's soft object regions); in training mode the
    output then also holds ``"aux"`` (logits at input size) and ``"aux_weight"``
    (its loss weight). In eval mode only ``"out"`` is returned.

    A backbone with ``size_divisor > 1`` (HRNet) gets its input zero-padded at
    the bottom/right to a multiple of it; logits and features are cropped back.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, num_classes: int, aux_weight: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1))

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set ``pixel_mean`` / ``pixel_std`` (per RGB channel, [0, 1] units)."""
        with torch.no_grad():
            self.pixel_mean.copy_(torch.as_tensor(mean, dtype=self.pixel_mean.dtype).view(1, 3, 1, 1))
            self.pixel_std.copy_(torch.as_tensor(std, dtype=self.pixel_std.dtype).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the network's input."""
        return (x - self.pixel_mean) / self.pixel_std

    def training_only_modules(self) -> list[str]:
        """Prefixes of submodules that only training uses, which an exporter may drop.

        Empty for every registered network: OCRNet's auxiliary head is *not*
        training-only (its logits are the soft object regions the OCR block
        gathers); only its loss is.
        """
        return []

    @property
    def feature_channels(self) -> list[int]:
        return list(self.backbone.channels)

    @property
    def feature_strides(self) -> list[int]:
        return list(self.backbone.strides)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> dict[str, torch.Tensor | list[torch.Tensor] | float]:
        """x: (B, 3, H, W) RGB in [0, 1] (``normalize`` is applied here). ``with_features``: return the
        taps in eval mode too (for the feature-space measures)."""
        size = x.shape[-2:]
        x = self.normalize(x)
        divisor = self.backbone.size_divisor
        padded = pad_to_multiple(x, divisor) if divisor > 1 else x
        features = self.backbone(padded)
        heads = self.head(features)
        heads = heads if isinstance(heads, dict) else {"out": heads}
        if not self.training:
            out = {"out": resize_logits(heads["out"], padded.shape[-2:], size, divisor > 1)}
            if with_features:
                out["features"] = crop_features(features, self.feature_strides, size) if divisor > 1 else features
            return out
        out = {k: resize_logits(v, padded.shape[-2:], size, divisor > 1) for k, v in heads.items()}
        out["features"] = crop_features(features, self.feature_strides, size) if divisor > 1 else features
        if "aux" in out:
            out["aux_weight"] = self.aux_weight
        return out


def pad_to_multiple(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) at the bottom/right so H and W are multiples of ``divisor``."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))


def resize_logits(logits: torch.Tensor, padded: torch.Size, size: torch.Size, crop: bool) -> torch.Tensor:
    """Bilinear upsampling to the (padded) input size, then the crop back to ``size``."""
    logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    return logits[..., :size[0], :size[1]] if crop else logits


def crop_features(features: list[torch.Tensor], strides: list[int], size: torch.Size) -> list[torch.Tensor]:
    """Each tap cropped to ceil(H / s) x ceil(W / s): the cells that cover the unpadded image."""
    return [f[..., :-(-size[0] // s), :-(-size[1] // s)] for f, s in zip(features, strides)]
