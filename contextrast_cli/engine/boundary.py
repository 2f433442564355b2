"""Boundary metrics, accumulated over a dataset per class, vectorised over the classes of an image.

* **Boundary IoU** (Cheng et al., CVPR 2021): a mask's boundary band is the mask minus its
  erosion by a (2d+1)-square, d = ``width`` x the image diagonal rounded (at least 1 pixel),
  the image border counting as background, as the authors' ``mask_to_boundary`` (3x3
  ``cv2.erode`` d times after a one-pixel zero border). Per class: intersection over union of
  the ground-truth and predicted bands, both summed over the dataset.
* **Boundary F-score** (Csurka et al., BMVC 2013): a class's contour is its pixels with an
  8-neighbour of another label (the image border is not a contour). Precision: the share of
  predicted contour pixels within Euclidean distance ``tolerance`` x diagonal (rounded, at
  least 1 pixel) of a ground-truth contour pixel; recall the other way round; F = 2PR / (P + R),
  from the counts summed over the dataset.

Ignored pixels (``ignore_index``) belong to no class: they count as "another label" for the
masks and are left out of every count.
"""

import math

import torch
import torch.nn.functional as F

from contextrast_cli.engine.metrics import rounded


def band_radius(ratio: float, height: int, width: int) -> int:
    """``ratio`` x the image diagonal in pixels, rounded as the Boundary IoU code does, at least 1."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def erode(masks: torch.Tensor, radius: int, border_inside: bool) -> torch.Tensor:
    """Erosion of (N, H, W) bool masks by a (2 radius + 1)-square (two separable max filters).

    Args:
        border_inside: pixels beyond the image count as inside every mask (the border does not
            erode); otherwise as outside (the border erodes, as a zero-padded image).
    """
    outside = (~masks).float()[:, None]
    outside = F.pad(outside, (radius,) * 4, value=0.0 if border_inside else 1.0)
    k = 2 * radius + 1
    outside = F.max_pool2d(F.max_pool2d(outside, (1, k), stride=1), (k, 1), stride=1)
    return outside[:, 0] == 0


def boundary_band(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels of each mask within Chebyshev distance ``radius`` of its outside (the border is outside)."""
    return masks & ~erode(masks, radius, border_inside=False)


def contours(masks: torch.Tensor) -> torch.Tensor:
    """Pixels of each mask with an 8-neighbour outside it (the image border does not count)."""
    return masks & ~erode(masks, 1, border_inside=True)


def near(points: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within Euclidean distance ``radius`` of a True pixel of (N, H, W) ``points``."""
    offsets = torch.arange(-radius, radius + 1, device=points.device, dtype=torch.float32)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).float()
    hits = F.conv2d(points.float()[:, None], disk[None, None], padding=radius)
    return hits[:, 0] > 0.5


class BoundaryMeter:
    """Per-class boundary IoU and boundary F-score counts over a dataset.

    Args:
        num_classes: K; predictions and labels hold train ids 0..K-1 (labels also ``ignore_index``).
        width: the Boundary IoU band width as a fraction of the diagonal (0.02 in the paper).
        tolerance: the F-score matching distance as a fraction of the diagonal.
    """

    COUNTS = ("band_inter", "band_union", "pred_matched", "pred_total", "gt_matched", "gt_total")

    def __init__(self, num_classes: int, ignore_index: int = 255, width: float = 0.02,
                 tolerance: float = 0.0075, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.width, self.tolerance = width, tolerance
        self.counts = torch.zeros(len(self.COUNTS), num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` (B, H, W) train ids."""
        for p, t in zip(pred, target):
            self._add_image(p, t)

    def _add_image(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        classes = torch.unique(torch.cat([pred[valid], target[valid]])).long()
        classes = classes[classes < self.num_classes]
        if classes.numel() == 0:
            return
        gt = target[None] == classes[:, None, None]  # (P, H, W), P classes present
        pr = pred[None] == classes[:, None, None]
        d = band_radius(self.width, *target.shape)
        gt_band, pr_band = boundary_band(gt, d) & valid, boundary_band(pr, d) & valid
        r = band_radius(self.tolerance, *target.shape)
        gt_edge, pr_edge = contours(gt), contours(pr)
        gt_near, pr_near = near(gt_edge, r), near(pr_edge, r)
        gt_edge, pr_edge = gt_edge & valid, pr_edge & valid
        counts = torch.stack([gt_band & pr_band, gt_band | pr_band, pr_edge & gt_near, pr_edge,
                              gt_edge & pr_near, gt_edge]).sum((2, 3))  # (6, P)
        self.counts[:, classes] += counts.to(self.counts.device)

    def all_reduce(self) -> None:
        """Sum the counts of every process (each evaluated a share of the images)."""
        torch.distributed.all_reduce(self.counts)

    def compute(self, classes: tuple[str, ...]) -> dict:
        """``mBIoU``, ``BIoU`` per class, ``mBF``, ``BF`` per class (None where a class has no
        boundary in prediction or ground truth), and the two widths used."""
        inter, union, pm, pt, gm, gt = self.counts.double().cpu()
        biou = inter / union.where(union > 0, torch.nan)
        precision = pm / pt.where(pt > 0, torch.nan)
        recall = gm / gt.where(gt > 0, torch.nan)
        f = (2 * precision * recall / (precision + recall)).nan_to_num(0.0)
        f = f.where((pt > 0) | (gt > 0), torch.nan)  # a class with no contour either side: undefined
        return {"width": self.width, "tolerance": self.tolerance,
                "mBIoU": rounded(biou.nanmean()), "BIoU": {n: rounded(v) for n, v in zip(classes, biou)},
                "mBF": rounded(f.nanmean()), "BF": {n: rounded(v) for n, v in zip(classes, f)}}

