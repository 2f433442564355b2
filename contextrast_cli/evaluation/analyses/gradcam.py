"""Grad-CAM per class (Selvaraju et al., ICCV 2017) with ``pytorch-grad-cam``, at the tapped layers.

For an image and a class c, the target is the sum of the class-c logits over the pixels the
network predicts as c (the package's ``SemanticSegmentationTarget``); the map is Grad-CAM's
ReLU(sum_k w_k A_k) at one tapped layer, resized to the image and scaled to [0, 1] by the package.
The tap is hooked through an identity module on the backbone's output (any backbone that returns
its taps as a list), one layer at a time.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class _TapAt(nn.Module):
    """The segmentor as Grad-CAM sees it: images -> logits, with tap ``layer`` passed through
    ``self.tap`` (an identity the package hooks for activations and gradients)."""

    def __init__(self, model: nn.Module, layer: int) -> None:
        super().__init__()
        self.model, self.layer, self.tap = model, layer, nn.Identity()

    def _route(self, _module, _inputs, output):
        taps = list(output)
        taps[self.layer - 1] = self.tap(taps[self.layer - 1])
        return taps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        handle = self.model.backbone.register_forward_hook(self._route)
        try:
            return self.model(images)["out"]
        finally:
            handle.remove()


def class_cams(model: nn.Module, image: torch.Tensor, classes: Sequence[int], layers: Sequence[int],
               pred: torch.Tensor | None = None) -> dict[int, np.ndarray]:
    """Grad-CAM maps of ``classes`` for one image at each of ``layers``.

    Args:
        model: the segmentor (eval mode is set by the package).
        image: (3, H, W) RGB in [0, 1] on the model's device.
        pred: (H, W) the prediction whose class masks are the targets (default: the model's).

    Returns:
        layer -> (len(classes), H, W) float32 maps in [0, 1].
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    if pred is None:
        with torch.no_grad():
            pred = model(image[None])["out"].argmax(1)[0]
    masks = [(pred == c).float().cpu().numpy() for c in classes]
    batch = image[None].expand(len(classes), *image.shape).contiguous()  # one element per class target
    out = {}
    for layer in layers:  # one target layer per call: the package would average several
        wrapped = _TapAt(model, layer)
        with GradCAM(model=wrapped, target_layers=[wrapped.tap]) as cam:
            out[layer] = cam(input_tensor=batch, targets=[SemanticSegmentationTarget(c, m)
                                                          for c, m in zip(classes, masks)])
    return out
