"""Joint image/mask augmentation with torchvision.transforms.v2 and tv_tensors.Mask."""

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from contextrast_cli.config import BaseSize, DataConfig
from contextrast_cli.config.datasets import IGNORE_INDEX


class ResizeToBase(torch.nn.Module):
    """Resize image and mask to ``base.fit`` of their size (``data.base_size``): the image
    bilinearly (antialiased), the mask by nearest neighbour; unchanged when already that size."""

    def __init__(self, base: BaseSize) -> None:
        super().__init__()
        self.base = base

    def forward(self, image: tv_tensors.Image, mask: tv_tensors.Mask):
        size = list(self.base.fit(*image.shape[-2:]))
        if size == list(image.shape[-2:]):
            return image, mask
        return F.resize(image, size, antialias=True), F.resize(mask, size)


class RandomScale(torch.nn.Module):
    """Rescale image and mask by one factor drawn uniformly from ``scale_range``.

    The image is resized bilinearly (antialiased), the mask by nearest neighbour
    (tv_tensors.Mask dispatch).
    """

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.low, self.high = scale_range

    def forward(self, image: tv_tensors.Image, mask: tv_tensors.Mask):
        scale = torch.empty(()).uniform_(self.low, self.high).item()
        height, width = image.shape[-2:]
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        return F.resize(image, size, antialias=True), F.resize(mask, size)


def _to_float() -> v2.Transform:
    """uint8 RGB -> float32 in [0, 1]; the network normalises (``Segmentor.pixel_mean``)."""
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def train_transform(cfg: DataConfig) -> v2.Compose:
    """Base size (``cfg.base_size``, when set) -> random scale -> crop (labels padded with 255) ->
    flip -> colour jitter -> float in [0, 1]."""
    jitter = cfg.color_jitter
    steps = [ResizeToBase(cfg.base_size)] if cfg.base_size is not None else []
    steps += [
        RandomScale(cfg.scale_range),
        v2.RandomCrop(list(cfg.crop_size), pad_if_needed=True,
                      fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
    ]
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if any((jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)):
        steps.append(v2.ColorJitter(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue))
    return v2.Compose([*steps, _to_float()])


def eval_transform() -> v2.Compose:
    """Float in [0, 1] only: images and labels keep their own size; the base size and the test
    scales are applied in inference (``evaluation.inference.predict_probs``)."""
    return v2.Compose([_to_float()])
