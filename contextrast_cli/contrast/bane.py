"""Boundary-aware negative sampling (BANE, METHOD.md section 3): error masks, exact distances to
their boundaries, and the picks nearest the boundary, vectorised over pixels and classes.

The pixels of E^n are predicted as n, so each is a negative for anchor n alone: BANE's picks
are a flat list of (pixel, anchor) pairs, never a (classes x pixels) matrix. One sort of every
layer's pixels by (anchor, distance) ranks every E^n of every layer at once.
"""

from dataclasses import dataclass

import torch

from contextrast_cli.contrast.consts import fill
from contextrast_cli.contrast.edt import region_distances


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

    def part(self, shape, pixels: slice = slice(None)) -> "BaneMaps":
        """The maps of ``pixels`` (a range of the flat pixel order: one layer of stacked maps) as ``shape``."""
        return BaneMaps(*(t.reshape(-1)[pixels].view(shape) for t in (self.error, self.distance, self.selected,
                                                                       self.pred)))


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
    shape = tuple(labels.shape)
    ranked = ranked_errors(pred.reshape(-1), labels.reshape(-1), torch.zeros_like(labels.reshape(-1)), (shape,),
                           num_classes, ratio, ignore_index)
    return ranked.maps.part(shape)


@dataclass
class RankedErrors:
    """``BaneMaps`` over stacked layers (flat (P,) tensors) and the one sort behind them: the
    pixels ordered by (anchor, distance), each error pixel's rank within its anchor's E^n, and
    ceil(ratio |E^n|) per anchor."""

    maps: BaneMaps
    order: torch.Tensor
    rank: torch.Tensor
    sorted_anchor: torch.Tensor
    keep: torch.Tensor  # (G,)


def ranked_errors(pred: torch.Tensor, labels: torch.Tensor, layer: torch.Tensor, shapes, num_classes: int,
                  ratio: float, ignore_index: int = 255) -> RankedErrors:
    """BANE over stacked layers: ``pred``, ``labels`` and ``layer`` (P,) flat, the layers' maps of
    ``shapes`` one after the other; the anchor of E^n at layer l is l x K + n.

    One stable sort ranks every E^n of every layer: the integer key anchor x span + squared
    distance (span above every in-image squared distance) is exact for any class count and map
    size, and ranks as the distance does."""
    error = (pred != labels) & (labels != ignore_index)
    squares = region_distances(torch.where(error, pred, fill(pred, -1)), shapes, squared=True)
    groups = len(shapes) * num_classes
    anchor = layer * num_classes + pred
    span = max(h + w for _, h, w in shapes) ** 2 + 1  # (h + w)^2 > h^2 + w^2; an image of one region: inf -> span - 1
    key = torch.where(error, anchor * span + squares.clamp_max(span - 1).long(), fill(anchor, groups * span))
    order = key.argsort(stable=True)  # ties: raster order
    counts = count_ids(torch.where(error, anchor, fill(anchor, groups)), groups + 1)[:groups]
    keep = torch.ceil(counts * ratio).long()
    positions = torch.arange(order.numel(), device=order.device)
    total = counts.sum()
    sorted_anchor = torch.where(positions < total, anchor[order], fill(anchor, groups))
    rank = positions - torch.cat([counts.cumsum(0) - counts, total[None]])[sorted_anchor]
    chosen = (sorted_anchor < groups) & (rank < keep[sorted_anchor.clamp_max(groups - 1)])
    selected = torch.zeros_like(error).index_put_((order,), chosen)
    distance = torch.where(error, squares.sqrt(), fill(squares, float("inf")))
    return RankedErrors(BaneMaps(error, distance, selected, pred), order, rank, sorted_anchor, keep)


def fill_slots(slots: tuple[torch.Tensor, torch.Tensor], order: torch.Tensor, sorted_anchor: torch.Tensor,
               rank: torch.Tensor, take: torch.Tensor, starts: torch.Tensor, local: torch.Tensor) -> None:
    """Write the first ``take[a]`` pixels of each anchor's segment of ``order`` into the pair slots
    (``slots``: pixel index within its layer, anchor id; one spare slot at the end absorbs every
    pixel not taken), each layer's anchors one after the other from ``starts`` (I,) on."""
    groups, layers = take.numel(), starts.numel()
    anchor = sorted_anchor.clamp_max(groups - 1)
    chosen = (sorted_anchor < groups) & (rank < take[anchor])
    per_layer = take.view(layers, groups // layers)
    first = (per_layer.cumsum(1) - per_layer + starts[:, None]).view(-1)
    slot = torch.where(chosen, first[anchor] + rank, fill(rank, slots[0].numel() - 1))
    slots[0].scatter_(0, slot, local[order])
    slots[1].scatter_(0, slot, anchor)
