"""Boundary-aware negative sampling (BANE, METHOD.md section 3): error masks, exact distances to
their boundaries, and the picks nearest the boundary, vectorised over pixels and classes.

The pixels of E^n are predicted as n, so each is a negative for anchor n alone: BANE's picks
are a flat list of (pixel, anchor) pairs, never a (classes x pixels) matrix. One sort of the
layer's pixels by (predicted class, distance) ranks every E^n at once.
"""

import math
from dataclasses import dataclass

import torch

from contextrast_cli.contrast.edt import region_distance


def count_ids(ids: torch.Tensor, length: int) -> torch.Tensor:
    """``torch.bincount(ids, minlength=length)`` for ids known to lie in [0, length), without
    a host synchronisation (bincount sizes its output from the data's maximum).

    Returns:
        (length,) int64 counts.
    """
    flat = ids.reshape(-1)
    return torch.zeros(length, dtype=torch.long, device=ids.device).scatter_add_(0, flat, torch.ones_like(flat))


@dataclass
class BaneMaps:
    """What BANE sees at one layer (also what visualize-boundaries draws).

    Attributes:
        error: (B, h, w) bool, pixels predicted as a class they are not (E^n for n = pred).
        distance: (B, h, w) float32 distance to the error region's boundary (inf outside errors).
        selected: (B, h, w) bool, the share ``ratio`` of each E^n nearest its boundary.
        pred: (B, h, w) int64 prediction at this layer's size.
    """

    error: torch.Tensor
    distance: torch.Tensor
    selected: torch.Tensor
    pred: torch.Tensor


@dataclass
class BanePicks:
    """BANE's negatives at one layer, a fixed-length list (no host synchronisation).

    Attributes:
        index: (M,) pixel indices into the flattened (B, h, w) layer, per anchor nearest first.
        anchor: (M,) the anchor each pick is a negative of (its predicted class).
        valid: (M,) bool, a real pick (the rest is padding).
        counts: (K,) picks per anchor.
    """

    index: torch.Tensor
    anchor: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor


def bane_maps(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ratio: float,
              ignore_index: int = 255) -> BaneMaps:
    """Error masks, exact boundary distances and the BANE selection at one layer.

    For anchor class n, E^n = (pred == n) & (label != n) & (label != ignore); its pixels are
    ranked by Euclidean distance to the nearest pixel outside E^n and the
    ``ceil(ratio * |E^n|)`` nearest (over the whole batch) are selected.

    Args:
        pred: (B, h, w) predicted class ids (detached).
        labels: (B, h, w) ground truth, ``ignore_index`` ignored.
    """
    return ranked_errors(pred, labels, num_classes, ratio, ignore_index).maps


@dataclass
class RankedErrors:
    """``BaneMaps`` and the one sort behind them: the layer's pixels ordered by (predicted class,
    distance), each error pixel's rank within its class, and the selection per class."""

    maps: BaneMaps
    order: torch.Tensor
    rank: torch.Tensor
    sorted_class: torch.Tensor
    selected: torch.Tensor  # (K,) ceil(ratio * |E^n|)


def ranked_errors(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ratio: float,
                  ignore_index: int = 255) -> RankedErrors:
    """``bane_maps`` with its sort kept, for ``bane_picks``."""
    error = (pred != labels) & (labels != ignore_index)
    distance = region_distance(torch.where(error, pred, -1))
    distance = torch.where(error, distance, torch.full_like(distance, float("inf")))
    order, counts = _rank_errors(pred, error, distance, num_classes)
    keep = torch.ceil(counts * ratio).long()
    rank, sorted_class = _ranks(order, pred.reshape(-1), counts, num_classes)
    chosen = (sorted_class < num_classes) & (rank < keep[sorted_class.clamp_max(num_classes - 1)])
    selected = torch.zeros(order.numel(), dtype=torch.bool, device=pred.device)
    selected[order] = chosen
    return RankedErrors(BaneMaps(error, distance, selected.view_as(error), pred), order, rank, sorted_class, keep)


def _rank_errors(pred: torch.Tensor, error: torch.Tensor, distance: torch.Tensor,
                 num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's pixels sorted by (predicted class, distance), error pixels first within each
    class, the others last; and |E^n| per class. The key is float64: exact for any class count
    and map size (class * span + distance, span above every in-image distance)."""
    flat_pred, flat_error = pred.reshape(-1), error.reshape(-1)
    span = float(sum(pred.shape[-2:]) + 2)
    dist = distance.reshape(-1).clamp_max(span - 1).double()
    key = torch.where(flat_error, flat_pred.double() * span + dist, torch.full_like(dist, float("inf")))
    order = key.argsort(stable=True)  # ties: raster order
    counts = count_ids(torch.where(flat_error, flat_pred, num_classes), num_classes + 1)[:num_classes]
    return order, counts


def _ranks(order: torch.Tensor, flat_pred: torch.Tensor, counts: torch.Tensor,
           num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sorted error pixel's rank within its class (nearest first), and its class (K for the
    non-error pixels at the end)."""
    positions = torch.arange(order.numel(), device=order.device)
    total = counts.sum()
    sorted_class = torch.where(positions < total, flat_pred[order], num_classes)
    starts = torch.cat([counts.cumsum(0) - counts, total[None]])
    return positions - starts[sorted_class], sorted_class


def bane_picks(ranked: RankedErrors, max_negatives: int, anchored: torch.Tensor, ratio: float = 1.0) -> BanePicks:
    """The selected pixels of each E^n, nearest first, at most ``max_negatives`` per anchor, for
    the ``anchored`` (K,) classes only, as a flat list of slots: as many as the picks can number
    without reading them (no host sync), min(P, K x max_negatives, ceil(ratio x P) + 2K) (each
    ceil(ratio x |E^n|) is below ratio x |E^n| + 1, the E^n are disjoint; K more for rounding)."""
    num_classes, pixels = anchored.numel(), ranked.order.numel()
    take = torch.where(anchored, ranked.selected.clamp_max(max_negatives), 0)
    size = min(pixels, num_classes * max_negatives, math.ceil(ratio * pixels) + 2 * num_classes)
    return flat_slots(ranked.order, ranked.sorted_class, ranked.rank, take, size, BanePicks)


def flat_slots(order, sorted_class, rank, take, size: int, kind):
    """Scatter the first ``take[k]`` pixels of each class segment of ``order`` into ``size``
    slots, classes one after the other (a spare slot absorbs every pixel not taken)."""
    num_classes = take.numel()
    klass = sorted_class.clamp_max(num_classes - 1)
    chosen = (sorted_class < num_classes) & (rank < take[klass])
    starts = take.cumsum(0) - take
    slot = torch.where(chosen, starts[klass] + rank, size)
    index = order.new_zeros(size + 1).scatter_(0, slot, order)[:size]
    anchor = order.new_zeros(size + 1).scatter_(0, slot, klass)[:size]
    valid = torch.arange(size, device=order.device) < take.sum()
    return kind(index, anchor, valid, take)
