"""Boundary metrics, accumulated over a dataset per class, with void as "don't care".

Definitions. Write L for a label map (the ground truth, or the prediction), V for the labelled
pixels (ground truth not ``IGNORE_INDEX``), d = ``width`` x the image diagonal and r =
``tolerance`` x the diagonal, both rounded as the Boundary IoU code does and at least 1 pixel.
Both maps are read only on V: a void pixel is no edge to anything, on either side.

* **Band pixel** (Boundary IoU, Cheng et al., CVPR 2021) of class c in L: a pixel p of V with
  L(p) = c such that a pixel q at Chebyshev distance <= d from p (a (2d+1)-square) lies beyond the
  image border or lies in V with L(q) != c. Per class this is the authors' ``mask_to_boundary``
  (a one-pixel zero border, d 3x3 erosions) of the mask {L = c} with the void pixels added to it,
  kept on {L = c} and V. Boundary IoU of c: the pixels in both the truth's and the prediction's
  band of c over those in either, both counts summed over the dataset.
* **Contour pixel** (boundary F-score, Csurka et al., BMVC 2013) of class c in L: a pixel p of V
  with L(p) = c and an 8-neighbour q (inside the image: the border is no contour) in V with
  L(q) != c. A predicted contour pixel of c is matched when a ground-truth contour pixel of c lies
  within Euclidean distance r; a ground-truth one when a predicted one does. Precision = matched
  / predicted contour pixels, recall = matched / ground-truth contour pixels, F = 2PR / (P + R),
  from the counts summed over the dataset (None where neither side has a contour of c).

So a region's edge against void is no boundary of it (the image border is, for the band, as in
the Boundary IoU code); a prediction is counted only where the truth is labelled, its pixels in
void being neither predicted points nor match targets, and what it says inside void changes no
count. Two classes that meet only across void are still seen as neighbours when the gap is
within the radius (d for bands, 1 for contours): a void line one pixel wide hides their contour.

Each pixel has one label, so one pass over the label map answers every class at once: a pixel
is in its class's band (or contour) when another labelled id lies within the radius, found with
max filters of the map and of its negation, void set below every id in both; the F-score's
matching visits only the sparse contour pixels, over the offsets of a disk. No mask per class
is built.
"""

import math

import torch
import torch.nn.functional as F

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.evaluation.metrics import rounded

_FAR = 1e4  # beyond every id: as a border sentinel "another label"; negated, a void pixel that decides nothing


def band_radius(ratio: float, height: int, width: int) -> int:
    """``ratio`` x the image diagonal in pixels, rounded as the Boundary IoU code does, at least 1."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def _differs(labels: torch.Tensor, valid: torch.Tensor, radius: int, border_differs: bool) -> torch.Tensor:
    """(H, W) bool: a pixel of ``valid`` with another label lies within Chebyshev distance ``radius``.

    One label map answers every class at once (each pixel has one label): the window holds
    another labelled id exactly when its maximum or minimum over ``valid`` differs from the
    centre. Two separable max filters each, on the map itself rather than on one mask per class;
    pixels outside ``valid`` are set below every id in both, so they never decide either extreme.
    Only meaningful at pixels of ``valid`` (elsewhere the centre is not an id).

    Args:
        border_differs: pixels beyond the image count as another label (the image border is an
            edge, as a zero-padded mask's); otherwise they are void, like the pixels outside ``valid``.
    """
    x = labels.to(torch.float32)[None, None]  # train ids are exact in float32
    both = torch.cat([x, -x], 1).masked_fill(~valid, -_FAR)  # max filters of the map and its negation
    both = F.pad(both, (radius,) * 4, value=_FAR if border_differs else -_FAR)
    k = 2 * radius + 1
    extremes = F.max_pool2d(F.max_pool2d(both, (1, k), stride=1), (k, 1), stride=1)[0]
    return (extremes[0] > x[0, 0]) | (extremes[1] > -x[0, 0])


def _disk(radius: int, device) -> torch.Tensor:
    """(K, 2) integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2."""
    r = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    keep = dy**2 + dx**2 <= radius**2
    return torch.stack([dy[keep], dx[keep]], 1)


def _matched(points: torch.Tensor, classes: torch.Tensor, targets: torch.Tensor, radius: int,
             chunk: int = 64) -> torch.Tensor:
    """For each contour pixel ``points`` (N, 2) of class ``classes`` (N,): is a pixel of
    ``targets`` (H, W: a class id on the other side's contour, -1 elsewhere) of the same class
    within Euclidean distance ``radius``? Offsets are tried in chunks over the sparse contour
    pixels only (a loop over offset chunks, not over pixels)."""
    height, width = targets.shape
    hit = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    offsets = _disk(radius, points.device)
    for start in range(0, len(offsets), chunk):
        part = offsets[start:start + chunk]
        yy = points[:, :1] + part[:, 0]  # (N, k)
        xx = points[:, 1:] + part[:, 1]
        inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        found = targets[yy.clamp(0, height - 1), xx.clamp(0, width - 1)] == classes[:, None]
        hit |= (found & inside).any(1)
    return hit


def band_counts(pred: torch.Tensor, target: torch.Tensor, radius: int,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Boundary IoU counts of one image: per class, the pixels in both the truth's and the
    prediction's band of half-width ``radius`` pixels (the module's band pixels, d = ``radius``)
    and the pixels in either.

    Args:
        pred, target: (H, W) int64 train ids (``target`` also ``IGNORE_INDEX``).

    Returns:
        (K,) intersections and (K,) unions, int64.
    """
    k = num_classes
    valid = target != IGNORE_INDEX  # both maps are read only here
    gt_band = valid & _differs(target, valid, radius, True)  # a pixel is in its own label's band, no other's
    pr_band = valid & _differs(pred, valid, radius, True)
    both = gt_band & pr_band & (target == pred)
    inter = torch.bincount(target[both], minlength=k)[:k]
    return inter, torch.bincount(target[gt_band], minlength=k)[:k] + torch.bincount(pred[pr_band], minlength=k)[:k] - inter


class BoundaryMeter:
    """Per-class boundary IoU and boundary F-score counts over a dataset.

    Args:
        num_classes: K; predictions and labels hold train ids 0..K-1 (labels also ``IGNORE_INDEX``).
        width: the Boundary IoU band width as a fraction of the diagonal (0.02 in the paper).
        tolerance: the F-score matching distance as a fraction of the diagonal.
    """

    COUNTS = ("band_inter", "band_union", "pred_matched", "pred_total", "gt_matched", "gt_total")

    def __init__(self, num_classes: int, width: float = 0.02,
                 tolerance: float = 0.0075, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.width, self.tolerance = width, tolerance
        self.counts = torch.zeros(len(self.COUNTS), num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` (B, H, W) train ids."""
        for p, t in zip(pred, target):
            self._add_image(p, t)

    def _add_image(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        k, counts = self.num_classes, self.counts
        pred, target = pred.long(), target.long()
        valid = target != IGNORE_INDEX  # both maps are read only here
        inter, union = band_counts(pred, target, band_radius(self.width, *target.shape), k)
        gt_edge = valid & _differs(target, valid, 1, False)  # contour pixels, all labelled
        pr_edge = valid & _differs(pred, valid, 1, False)
        r = band_radius(self.tolerance, *target.shape)
        gt_cls, pr_cls = target[gt_edge], pred[pr_edge]
        pr_hit = _matched(torch.nonzero(pr_edge), pr_cls, torch.where(gt_edge, target, -1), r)
        gt_hit = _matched(torch.nonzero(gt_edge), gt_cls, torch.where(pr_edge, pred, -1), r)
        counts[0] += inter
        counts[1] += union
        counts[2] += torch.bincount(pr_cls[pr_hit], minlength=k)[:k]
        counts[3] += torch.bincount(pr_cls, minlength=k)[:k]
        counts[4] += torch.bincount(gt_cls[gt_hit], minlength=k)[:k]
        counts[5] += torch.bincount(gt_cls, minlength=k)[:k]

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

