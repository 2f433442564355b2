"""Positive sampling and boundary-aware negative (BANE) sampling, vectorised.

All functions work on one tapped layer with the batch flattened to P pixels and
return fixed-shape (K, M) index matrices with a validity mask, so no host
synchronisation is needed (counts use ``count_ids``: ``torch.bincount`` reads the input's
minimum and maximum back to the host on CUDA). K is the number of classes (anchors), not
only the present ones; rows of absent classes are simply all-invalid.
"""

from dataclasses import dataclass

import torch
import torch.distributed

from contextrast_cli.contrast.edt import region_distance

BANE_PRIORITY = 2.0  # scores >= this are BANE picks; random top-up scores lie in [0, 1)


@dataclass
class BaneMaps:
    """What BANE sees at one layer (also what visualize-boundaries draws).

    Attributes:
        error: (B, h, w) bool, pixels predicted as a class they are not (E^n for n = pred).
        distance: (B, h, w) float32 distance to the error region's boundary (inf outside errors).
        selected: (B, h, w) bool, the fraction ``ratio`` of each E^n nearest its boundary.
        pred: (B, h, w) int64 prediction at this layer's size.
    """

    error: torch.Tensor
    distance: torch.Tensor
    selected: torch.Tensor
    pred: torch.Tensor


def count_ids(ids: torch.Tensor, length: int) -> torch.Tensor:
    """``torch.bincount(ids, minlength=length)`` for ids known to lie in [0, length), without
    a host synchronisation (bincount sizes its output from the data's maximum).

    Returns:
        (length,) int64 counts.
    """
    flat = ids.reshape(-1)
    return torch.zeros(length, dtype=torch.long, device=ids.device).scatter_add_(0, flat, torch.ones_like(flat))


@dataclass
class AnchorSlots:
    """The classes that get an anchor when a dataset has more classes than ``capacity``: the
    ``capacity`` classes with the most labelled pixels in the batch (all that are present, unless
    more are). Relabelled maps number them 0..capacity-1; a present class left out becomes
    ``capacity`` (a negative for the others, never an anchor or a positive); ignore stays.

    Attributes:
        slot_of: (K,) int64, class -> slot (``capacity`` for classes without one).
        dropped: () int64, present classes left without an anchor (0 unless over capacity).
    """

    slot_of: torch.Tensor
    dropped: torch.Tensor
    capacity: int
    ignore_index: int = 255

    @classmethod
    def of(cls, target: torch.Tensor, num_classes: int, capacity: int, ignore_index: int = 255,
           group=None) -> "AnchorSlots":
        """Slots for the classes of ``target`` (B, H, W), without a host synchronisation; with a
        process ``group``, for the classes of the global batch (the same slots on every process)."""
        flat = target.reshape(-1)
        counts = count_ids(torch.where((flat >= 0) & (flat < num_classes), flat, num_classes),
                           num_classes + 1)[:num_classes]
        if group is not None:
            torch.distributed.all_reduce(counts, group=group)
        top = counts.topk(capacity)  # fixed shape: the most frequent classes first
        slot_of = torch.full((num_classes,), capacity, dtype=torch.long, device=target.device)
        slot_of[top.indices] = torch.arange(capacity, device=target.device)
        return cls(slot_of, (counts > 0).sum() - (top.values > 0).sum(), capacity, ignore_index)

    def relabel(self, ids: torch.Tensor) -> torch.Tensor:
        """Class ids (ignore kept) -> slot ids."""
        inside = ids.clamp(0, len(self.slot_of) - 1)
        return torch.where(ids == self.ignore_index, ids, self.slot_of[inside])


def bane_maps(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ratio: float,
              ignore_index: int = 255) -> BaneMaps:
    """Error masks, exact boundary distances and the BANE selection at one layer.

    For anchor class n, E^n = (pred == n) & (label != n) & (label != ignore); its
    pixels are ranked by Euclidean distance to the nearest pixel outside E^n and
    the ``ceil(ratio * |E^n|)`` nearest (over the whole batch) are selected.

    Args:
        pred: (B, h, w) predicted class ids (detached).
        labels: (B, h, w) ground truth, ``ignore_index`` ignored.
    """
    error = (pred != labels) & (labels != ignore_index)
    distance = region_distance(torch.where(error, pred, -1))
    distance = torch.where(error, distance, torch.full_like(distance, float("inf")))
    return BaneMaps(error, distance, _nearest_fraction(pred, error, distance, num_classes, ratio), pred)


def _nearest_fraction(pred, error, distance, num_classes: int, ratio: float) -> torch.Tensor:
    """Per class n, mark the ceil(ratio * |E^n|) error pixels of E^n with the smallest distance."""
    flat_pred, flat_error = pred.reshape(-1), error.reshape(-1)
    span = float(sum(pred.shape[-2:]) + 2)  # larger than any finite in-image distance
    dist = distance.reshape(-1).clamp_max(span - 1)
    key = torch.where(flat_error, flat_pred * span + dist, torch.full_like(dist, float("inf")))
    order = key.argsort(stable=True)
    counts = count_ids(torch.where(flat_error, flat_pred, num_classes), num_classes + 1)[:num_classes]
    starts = counts.cumsum(0) - counts
    keep_per_class = torch.ceil(counts * ratio).long()
    sorted_class = flat_pred[order].clamp(0, num_classes - 1)
    rank = torch.arange(order.numel(), device=order.device) - starts[sorted_class]
    keep = flat_error[order] & (rank < keep_per_class[sorted_class])
    selected = torch.zeros_like(flat_error)
    selected[order] = keep
    return selected.view_as(error)


def shuffle_within_groups(groups: torch.Tensor, num_groups: int,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random order of the elements inside each group, by one sort of (group, random score).

    Args:
        groups: (P,) group ids in [0, num_groups).

    Returns:
        order (P,): element indices, grouped by ascending id, shuffled inside each group;
        counts (num_groups,) elements per group (group g starts at ``cumsum(counts)[g] - counts[g]``).
    """
    score = torch.rand(groups.numel(), device=groups.device, generator=generator, dtype=torch.float64)
    order = torch.argsort(groups.double() + score)
    return order, count_ids(groups, num_groups)


def sample_positives(labels: torch.Tensor, num_classes: int, max_positives: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``max_positives`` random pixels of each class.

    Args:
        labels: (P,) class ids (anything outside [0, K) never sampled).

    Returns:
        index (K, M) into the P pixels and valid (K, M) bool.
    """
    bins = torch.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    order, counts = shuffle_within_groups(bins, num_classes + 1, generator)  # one sort, not a (K, P) top-k
    counts = counts[:num_classes]
    starts = counts.cumsum(0) - counts
    slots = torch.arange(min(max_positives, labels.numel()), device=labels.device)
    valid = slots[None] < counts[:, None]  # (K, M)
    index = order[(starts[:, None] + slots[None]).clamp_max(labels.numel() - 1)]
    return torch.where(valid, index, 0), valid


def sample_negatives(labels: torch.Tensor, num_classes: int, max_negatives: int,
                     bane: BaneMaps | None = None, ignore_index: int = 255,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negatives per anchor: BANE picks first (nearest the boundary first), then random top-up.

    Args:
        labels: (P,) ground truth of the flattened layer.
        bane: the layer's BANE maps, or None for random negatives only.

    Returns:
        index (K, M), valid (K, M) bool, and is_bane (K, M) bool.
    """
    classes = torch.arange(num_classes, device=labels.device)[:, None]
    other = (labels[None] != classes) & (labels[None] != ignore_index)  # (K, P)
    scores = torch.rand(num_classes, labels.numel(), device=labels.device, generator=generator)
    if bane is not None:
        pick = bane.selected.reshape(-1)[None] & (bane.pred.reshape(-1)[None] == classes)
        closeness = 1.0 / (1.0 + bane.distance.reshape(-1).clamp_max(1e6))  # in (0, 1]
        scores = torch.where(pick, BANE_PRIORITY + closeness[None], scores)
    scores = torch.where(other, scores, torch.full_like(scores, -1.0))
    top = scores.topk(min(max_negatives, labels.numel()), dim=1)
    return top.indices, top.values >= 0, top.values >= BANE_PRIORITY


@dataclass
class NegativeSelection:
    """The negatives one layer contributes: BANE maps plus the per-anchor picks.

    Attributes:
        maps: the layer's BANE maps (None when BANE is off).
        index: (K, M) pixel indices into the flattened (B, h, w) layer.
        valid: (K, M) bool, a real negative.
        is_bane: (K, M) bool, picked by BANE (the rest of ``valid`` is random top-up).
    """

    maps: BaneMaps | None
    index: torch.Tensor
    valid: torch.Tensor
    is_bane: torch.Tensor


def select_negatives(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, max_negatives: int,
                     bane_ratio: float | None, ignore_index: int = 255,
                     generator: torch.Generator | None = None) -> NegativeSelection:
    """BANE maps and negatives for every anchor at one layer: the one code path the loss
    and ``visualize-boundaries`` share.

    Args:
        pred: (B, h, w) detached prediction resized (nearest) to the layer.
        labels: (B, h, w) ground truth at the layer.
        bane_ratio: BANE's ratio (the share of each error region taken), or None for random negatives only.
    """
    maps = None if bane_ratio is None else bane_maps(pred, labels, num_classes, bane_ratio, ignore_index)
    index, valid, is_bane = sample_negatives(labels.reshape(-1), num_classes, max_negatives, maps,
                                             ignore_index, generator)
    return NegativeSelection(maps, index, valid, is_bane)
