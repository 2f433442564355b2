"""Contextrast as a library: the public, semantically versioned surface.

Everything named in ``__all__`` is public: its names, arguments, defaults and returned keys
change only with a major version. Everything else in ``contextrast_cli`` is internal.

Add Contextrast to any PyTorch training loop::

    from contextrast_cli.api import ContextrastLoss, tap_features

    tapped = tap_features(model, ["backbone.layer1", ..., "backbone.layer4"], output="interpolate")
    criterion = ContextrastLoss(num_classes, tapped.channels)     # owns its projection heads
    out, features = tapped(images)
    terms = criterion(features, out, labels)                      # {"loss_ccl_l1": ..., "ccl_...": ...}
    loss = F.cross_entropy(out, labels, ignore_index=255) + sum_losses(terms)
    loss.backward()                                               # one backward, as usual

Give the optimizer ``criterion.parameters()`` too. The projection heads are for training only:
leave ``criterion`` out of the model you save for inference. The heads run under plain autograd
by default, so the contrastive terms may be backpropagated alone (contrastive-only training),
from frozen features, or with any other loss. ``deferred_heads=True`` saves memory when the
network's own loss is always backpropagated together with the terms (the ``contextrast``
trainer's case). Under DistributedDataParallel, put the criterion in the module DDP wraps (with
the network); ``sync_anchors=True`` (the default) then takes the anchors over the global batch.
"""

import numpy as np
import torch

from contextrast_cli.contrast.loss import ContextrastLoss, PixelContrastLoss
from contextrast_cli.contrast.sampling import BaneMaps, NegativeSelection, select_negatives
from contextrast_cli.data.synthetic import SYNTHETIC_CLASSES, render_scene
from contextrast_cli.train.objective import sum_losses
from contextrast_cli.models.taps import FeatureTap, Tapped, tap_features

__all__ = ["BaneMaps", "ContextrastLoss", "FeatureTap", "NegativeSelection", "PixelContrastLoss", "Tapped",
           "SYNTHETIC_CLASSES", "select_negatives", "sum_losses", "synthetic_batch", "tap_features"]


def synthetic_batch(count: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` procedural street scenes (the ``toy`` preset's generator; classes
    ``SYNTHETIC_CLASSES``) for smoke tests: images (count, 3, H, W) float32 RGB in [0, 1] and
    labels (count, H, W) int64. (seed, index) fixes each scene."""
    scenes = [render_scene(seed, index, height, width) for index in range(count)]
    images = torch.from_numpy(np.stack([image for image, _ in scenes])).permute(0, 3, 1, 2).float().div_(255)
    labels = torch.from_numpy(np.stack([label for _, label in scenes])).long()
    return images, labels
