"""mIoU by object size.

Definitions. A *region* of class c is a connected component (8-connectivity, OpenCV's
``connectedComponentsWithStats``) of the ground-truth pixels labelled c in one image; ignored
pixels belong to no region (a region cut by a void line is two). Its *size* is its pixel count.
With thresholds s_1 < ... < s_n (sides of squares, default 16, 32, 96), a region falls in bucket
0 when its size is at most s_1^2, in bucket b when s_b^2 < size <= s_{b+1}^2, in bucket n when it
is larger than s_n^2. Every labelled pixel takes its region's bucket.

The score of bucket b is the segmentation scored on bucket b's pixels only: the confusion matrix
of (ground truth, prediction) over the pixels whose region lies in b, summed over the split;
IoU_b(c) = TP / (TP + FP + FN) from it, where a false positive of c is a pixel of another class's
region of bucket b predicted as c; mIoU_b is the mean over the classes with ground-truth pixels in
bucket b. What the prediction says outside the bucket's regions does not count.
"""

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from contextrast_cli.config.datasets import IGNORE_INDEX

DEFAULT_SIDES = (16, 32, 96)


def bucket_names(sides: Sequence[int]) -> list[str]:
    """``["up to 16x16", "16x16 to 32x32", "32x32 to 96x96", "over 96x96"]``."""
    return ([f"up to {sides[0]}x{sides[0]}"] + [f"{a}x{a} to {b}x{b}" for a, b in zip(sides, sides[1:])]
            + [f"over {sides[-1]}x{sides[-1]}"])


def region_buckets(label: np.ndarray, sides: Sequence[int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's size bucket and the region count per bucket of one ground truth.

    Args:
        label: (H, W) train ids, ``IGNORE_INDEX`` ignored.

    Returns:
        (H, W) int64 bucket per pixel (-1 where ignored) and (n + 1,) regions per bucket.
    """
    limits = np.asarray(sides, np.int64) ** 2
    out = np.full(label.shape, -1, np.int64)
    regions = np.zeros(len(limits) + 1, np.int64)
    for c in np.unique(label):  # a loop over the classes present, not over pixels
        if c >= num_classes:
            continue
        mask = label == c
        _, component, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        bucket = np.searchsorted(limits, stats[:, cv2.CC_STAT_AREA], side="left")  # size <= s^2: below s
        out[mask] = bucket[component[mask]]
        regions += np.bincount(bucket[1:], minlength=len(limits) + 1)  # component 0 is the background
    return out, regions


class SizeMeter:
    """Per-bucket confusion matrices over a split (see the module's definitions)."""

    def __init__(self, num_classes: int, sides: Sequence[int] = DEFAULT_SIDES) -> None:
        sides = tuple(int(s) for s in sides)
        if not sides or any(s <= 0 for s in sides) or list(sides) != sorted(set(sides)):
            raise ValueError(f"size thresholds must be increasing positive sides, got {sides}")
        self.num_classes, self.sides = num_classes, sides
        self.conf = np.zeros((len(sides) + 1, num_classes, num_classes), np.int64)
        self.regions = np.zeros(len(sides) + 1, np.int64)

    def update(self, pred: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> None:
        """Add a batch: ``pred`` and ``labels`` (B, H, W) train ids."""
        pred, labels = np.asarray(torch.as_tensor(pred).cpu()), np.asarray(torch.as_tensor(labels).cpu())
        k = self.num_classes
        for p, t in zip(pred, labels):
            bucket, regions = region_buckets(t, self.sides, k)
            keep = (bucket >= 0) & (t != IGNORE_INDEX)
            index = (bucket[keep] * k + t[keep].astype(np.int64)) * k + p[keep].astype(np.int64)
            self.conf += np.bincount(index, minlength=self.conf.size).reshape(self.conf.shape)
            self.regions += regions

    def compute(self, classes: Sequence[str]) -> dict:
        """``{"sides", "buckets": {name: {"mIoU", "IoU": {class: ...}, "regions", "pixels"}}}``."""
        buckets = {}
        for name, conf, regions in zip(bucket_names(self.sides), self.conf.astype(np.float64), self.regions):
            tp, gt = np.diag(conf), conf.sum(1)
            union = gt + conf.sum(0) - tp
            iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=(gt > 0) & (union > 0))
            buckets[name] = {"mIoU": round(float(np.nanmean(iou)), 6) if (gt > 0).any() else None,
                             "IoU": {c: None if np.isnan(v) else round(float(v), 6) for c, v in zip(classes, iou)},
                             "regions": int(regions), "pixels": int(gt.sum())}
        return {"sides": list(self.sides), "buckets": buckets}
