"""Boundary IoU at several band widths given in pixels (the papers' 3, 10 and 20 px).

The band of a class is ``evaluation.boundary``'s band pixel definition with its half-width d set
to a number of pixels instead of a share of the image diagonal (Cheng et al.'s Boundary IoU at
d = 3, 10, 20): per class the pixels in both the truth's and the prediction's band over those in
either, both counts summed over the split; the mean is over the classes whose union is not empty.
"""

from collections.abc import Sequence

import torch

from contextrast_cli.evaluation.boundary import band_counts
from contextrast_cli.evaluation.metrics import rounded

DEFAULT_PIXELS = (3, 10, 20)


class BandMeter:
    """Boundary IoU counts per class at each band half-width of ``pixels``."""

    def __init__(self, num_classes: int, pixels: Sequence[int] = DEFAULT_PIXELS, device="cpu") -> None:
        pixels = tuple(int(p) for p in pixels)
        if not pixels or any(p < 1 for p in pixels) or len(set(pixels)) != len(pixels):
            raise ValueError(f"boundary thresholds must be different whole pixels >= 1, got {pixels}")
        self.num_classes, self.pixels = num_classes, pixels
        self.counts = torch.zeros(len(pixels), 2, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` (B, H, W) train ids."""
        for p, t in zip(pred.long(), target.long()):
            for index, radius in enumerate(self.pixels):  # a loop over thresholds, vectorised over pixels
                inter, union = band_counts(p, t, radius, self.num_classes)
                self.counts[index, 0] += inter.to(self.counts.device)
                self.counts[index, 1] += union.to(self.counts.device)

    def compute(self, classes: Sequence[str]) -> dict:
        """``{"<d>px": {"mBIoU", "BIoU": {class: ...}}}`` for each half-width d."""
        out = {}
        for radius, (inter, union) in zip(self.pixels, self.counts.double().cpu()):
            iou = inter / union.where(union > 0, torch.nan)
            out[f"{radius}px"] = {"mBIoU": rounded(iou.nanmean()), "BIoU": {c: rounded(v) for c, v in zip(classes, iou)}}
        return out
