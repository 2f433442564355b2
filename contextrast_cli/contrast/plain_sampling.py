"""The sampling of METHOD.md sections 2-3 in plain form, one layer, one class at a time: what
``contrast.sampling`` draws fast (one sort for every layer and class), written as a reader
would check it. ``contrast.implementation: plain`` trains with it; the sampling tests check
the same laws on both forms.

For anchor class n at a layer (labels and the prediction resized there):

* V+_n: min(|class n|, max_positives) pixels of class n, uniformly without replacement;
* BANE: E^n = predicted n, labelled another class (not ignored); each pixel's Euclidean distance
  to the nearest pixel outside E^n in its image (OpenCV's exact transform); the
  ceil(ratio |E^n|) nearest of the batch (ties in raster order), at most max_negatives;
* top-up: uniformly without replacement among the other classes' pixels that are not already
  n's BANE picks, up to max_negatives in all.
"""

import math

import cv2
import numpy as np
import torch

from contextrast_cli.contrast.plain import LayerSamples


def error_distances(pred: torch.Tensor, labels: torch.Tensor, n: int, ignore_index: int) -> torch.Tensor:
    """(B*h*w,) float64: the distance of each pixel of E^n to the nearest pixel outside it in its
    image (inf outside E^n)."""
    error = ((pred == n) & (labels != n) & (labels != ignore_index)).cpu().numpy()
    out = np.full(error.shape, np.inf)
    for b, mask in enumerate(error):
        if mask.any():
            out[b][mask] = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[mask]
    return torch.from_numpy(out.reshape(-1)).to(labels.device)


def bane_picks(pred: torch.Tensor, labels: torch.Tensor, n: int, ratio: float, max_negatives: int,
               ignore_index: int) -> torch.Tensor:
    """Section 3: the ceil(ratio |E^n|) pixels of E^n nearest its boundary, nearest first (at most
    ``max_negatives``)."""
    distance = error_distances(pred, labels, n, ignore_index)
    inside = torch.isfinite(distance).nonzero().flatten()
    order = inside[torch.argsort(distance[inside], stable=True)]  # ties: raster order
    return order[:min(math.ceil(ratio * inside.numel()), max_negatives)]


def uniform_sample(pixels: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` of ``pixels`` (or all of them), uniformly without replacement."""
    order = torch.randperm(pixels.numel(), generator=generator, device="cpu").to(pixels.device)
    return pixels[order[:count]]


def sample_layer(labels: torch.Tensor, pred: torch.Tensor | None, num_classes: int, anchored: torch.Tensor, *,
                 max_positives: int, max_negatives: int, bane_ratio: float | None, ignore_index: int = 255,
                 generator: torch.Generator | None = None) -> tuple[LayerSamples, list[int]]:
    """V+_n and V-_n of every ``anchored`` (K,) class present at one layer.

    Args:
        labels: (B, h, w) ground truth at the layer; pred: (B, h, w) prediction there (None: no BANE).

    Returns:
        the samples, and per class its number of BANE picks (the rest of V-_n is top-up).
    """
    flat = labels.reshape(-1)
    labelled = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    empty = flat.new_zeros(0)
    positives, negatives, bane_counts = [], [], []
    for n in range(num_classes):
        own = (labelled & (flat == n)).nonzero().flatten()
        if not anchored[n] or own.numel() == 0:
            positives.append(empty), negatives.append(empty), bane_counts.append(0)
            continue
        positives.append(uniform_sample(own, max_positives, generator))
        picks = empty if bane_ratio is None else bane_picks(pred, labels, n, bane_ratio, max_negatives, ignore_index)
        eligible = labelled & (flat != n)
        eligible[picks] = False
        topup = uniform_sample(eligible.nonzero().flatten(), max_negatives - picks.numel(), generator)
        negatives.append(torch.cat([picks, topup]))
        bane_counts.append(picks.numel())
    return LayerSamples(positives, negatives), bane_counts
