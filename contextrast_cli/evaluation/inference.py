"""The one inference path of validation, ``evaluate``, ``predict`` and the ONNX checks: whole-image
or sliding-window logits, averaged over test scales and horizontal flips.

Test scales are relative to ``eval.base_size`` when it is set (the size of ``BaseSize.fit`` with
both bounds times the scale, as mmsegmentation's ``MultiScaleFlipAug(img_scale=(2048, 512))`` and
HRNet-Semantic-Segmentation's ``base_size * scale``), else to each image's own size; the logits
are resized back to the image's (the label's) size either way.

Sliding window (``eval.mode: slide``), as mmsegmentation's ``slide_inference``: windows of
``eval.crop`` every ``eval.stride`` pixels, the last row and column of windows moved back to
end at the image's edge; the logits of overlapping windows are summed and divided by a count
map of how many windows cover each pixel. An image smaller than the crop is one window.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from contextrast_cli.config import BaseSize, EvalConfig
from contextrast_cli.errors import ConfigError

Segmenter = torch.nn.Module | Callable[[torch.Tensor], dict]
"""What inference runs: a network in eval mode, or any callable images -> ``{"out": logits}``."""


def slide_windows(height: int, width: int, crop: tuple[int, int],
                  stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, left, right)`` of every window over a ``height`` x ``width`` image."""
    (ch, cw), (sh, sw) = crop, stride
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    windows = []
    for r in range(rows):
        bottom = min(r * sh + ch, height)
        top = max(bottom - ch, 0)
        for c in range(cols):
            right = min(c * sw + cw, width)
            windows.append((top, bottom, max(right - cw, 0), right))
    return windows


def default_stride(crop: tuple[int, int]) -> tuple[int, int]:
    """Two thirds of the crop, rounded up, as mmsegmentation's 769x769 Cityscapes configs (stride 513)."""
    return (-(-2 * crop[0] // 3), -(-2 * crop[1] // 3))


def slide_logits(model: Segmenter, images: torch.Tensor, crop: tuple[int, int],
                 stride: tuple[int, int]) -> torch.Tensor:
    """(B, K, H, W) logits of ``images`` (B, 3, H, W) by sliding-window inference."""
    height, width = images.shape[-2:]
    total = count = None
    for top, bottom, left, right in slide_windows(height, width, crop, stride):
        logits = model(images[..., top:bottom, left:right])["out"].float()
        if total is None:
            total = logits.new_zeros(*logits.shape[:2], height, width)
            count = logits.new_zeros(1, 1, height, width)
        total[..., top:bottom, left:right] += logits
        count[..., top:bottom, left:right] += 1
    return total / count


def logits_of(model: Segmenter, images: torch.Tensor, cfg: EvalConfig) -> torch.Tensor:
    """Logits of one scale and orientation, whole-image or sliding-window as ``cfg.mode`` says."""
    if cfg.mode == "slide":
        if cfg.crop is None:
            raise ConfigError("eval.mode slide needs eval.crop (HxW window), e.g. --crop 512x1024")
        return slide_logits(model, images, cfg.crop, cfg.stride or default_stride(cfg.crop))
    return model(images)["out"].float()


def scaled_images(images: torch.Tensor, scale: float, base: BaseSize | None) -> torch.Tensor:
    """``images`` (B, 3, H, W) as the network sees them at test scale ``scale``.

    With ``base``: resized once to ``base.fit(H, W, scale)``, bilinearly and antialiased as the
    training's resizes are. Without: ``scale`` times their own size (``F.interpolate``'s
    ``scale_factor``, unchanged at 1.0).
    """
    if base is None:
        return images if scale == 1.0 else F.interpolate(
            images, scale_factor=scale, mode="bilinear", align_corners=False)
    size = base.fit(*images.shape[-2:], scale)
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def predict_probs(model: Segmenter, images: torch.Tensor, cfg: EvalConfig | None = None) -> torch.Tensor:
    """Class probabilities (B, K, H, W) averaged over ``cfg.scales`` (relative to ``cfg.base_size``
    when set: ``scaled_images``) and, with ``cfg.flip``, horizontal flips; each scale's logits come
    from ``logits_of`` and are resized back to the images' size.

    Args:
        model: the network in eval mode, or any callable images -> ``{"out": logits}``
            (an onnxruntime session adapter, ``evaluation.onnx.OnnxSegmentor``).
        images: (B, 3, H, W) RGB float images in [0, 1] on the model's device.
        cfg: the evaluation settings (default: one scale, no flip, whole image).
    """
    cfg = cfg or EvalConfig()
    size = images.shape[-2:]
    total, count = None, 0
    for scale in cfg.scales:
        x = scaled_images(images, scale, cfg.base_size)
        for flipped in ((False, True) if cfg.flip else (False,)):
            logits = logits_of(model, x.flip(-1) if flipped else x, cfg)
            logits = logits.flip(-1) if flipped else logits
            probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).softmax(1)
            total, count = (probs if total is None else total + probs), count + 1
    return total / count
