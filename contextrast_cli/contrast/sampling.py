"""Sample, then gather: the anchors, positives and negatives of one layer as flat, fixed-length
lists of pixels, never a (classes x pixels) matrix.

* anchors: every class present in the batch, or, above a cap, that many of them drawn at
  random with probability independent of their pixel count (``choose_anchors``);
* positives: one sort of the layer's pixels by (class, random key); each class's first
  ``max_positives`` (``sample_positives``);
* negatives: BANE's picks (``contrast.bane``), then a random top-up from one shared pool of
  pixels per layer: per anchor, the first pool pixels of other classes (and not already its
  BANE picks) up to ``max_negatives`` minus its BANE picks, found with a cumulative count
  along the pool (``select_negatives``).

The lists are padded to static lengths (no host synchronisation); ``valid`` masks say what is
real. ``NegativeSelection.index`` / ``valid`` / ``is_bane`` give the per-anchor (K, M) view
that figures and the public API use.
"""

from dataclasses import dataclass

import torch
import torch.distributed

from contextrast_cli.contrast.bane import BaneMaps, BanePicks, bane_picks, count_ids, flat_slots, ranked_errors

POOL_FACTOR = 4  # the top-up pool holds POOL_FACTOR x max_negatives pixels (all of a smaller layer)

__all__ = ["BaneMaps", "NegativeSelection", "Positives", "choose_anchors", "count_ids", "present_classes", "sample_positives",
           "select_negatives", "shuffle_within_groups"]


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


def choose_anchors(present: torch.Tensor, cap: int | None, group=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The classes that get an anchor: every ``present`` (K,) class, or, when more than ``cap`` are
    present, ``cap`` of them drawn uniformly at random (each present class equally likely,
    whatever its pixel count), the same on every process of ``group`` (the processes' random
    priorities are summed: identical everywhere, still exchangeable).

    Returns:
        anchored (K,) bool.
    """
    if cap is None or cap >= present.numel():
        return present
    priority = torch.rand(present.numel(), device=present.device, generator=generator, dtype=torch.float64)
    if group is not None:
        torch.distributed.all_reduce(priority, group=group)
    order = torch.where(present, priority, float("inf")).argsort()
    anchored = torch.zeros_like(present)
    anchored[order[:cap]] = True
    return anchored & present


def present_classes(target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(K,) bool: the classes with a pixel in ``target``."""
    flat = target.reshape(-1)
    inside = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    return count_ids(torch.where(inside, flat, num_classes), num_classes + 1)[:num_classes] > 0


@dataclass
class Positives:
    """Each anchor's positives: up to ``max_positives`` random pixels of its class, as a flat list.

    Attributes:
        index: (M,) pixel indices into the flattened (B, h, w) layer.
        anchor: (M,) the class of each.
        valid: (M,) bool, a real positive (the rest is padding).
        counts: (K,) positives per class.
    """

    index: torch.Tensor
    anchor: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor


def sample_positives(labels: torch.Tensor, num_classes: int, max_positives: int, anchored: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> Positives:
    """Up to ``max_positives`` distinct random pixels of each (``anchored``) class.

    Args:
        labels: (P,) class ids (anything outside [0, K) never sampled).
        anchored: (K,) bool, the classes with an anchor (default: all).

    Returns:
        ``Positives`` of min(P, K x max_positives) slots.
    """
    inside = (labels >= 0) & (labels < num_classes)
    if anchored is not None:
        inside &= anchored[labels.clamp(0, num_classes - 1)]
    bins = torch.where(inside, labels, num_classes)
    order, counts = shuffle_within_groups(bins, num_classes + 1, generator)  # one sort, not a (K, P) top-k
    positions = torch.arange(order.numel(), device=labels.device)
    starts = counts.cumsum(0) - counts
    sorted_class = bins[order]
    return flat_slots(order, sorted_class, positions - starts[sorted_class], counts[:num_classes].clamp_max(max_positives),
                      min(labels.numel(), num_classes * max_positives), Positives)


@dataclass
class NegativeSelection:
    """The negatives one layer contributes: BANE's picks and the random top-up from a shared pool.

    Attributes:
        maps: the layer's BANE maps (None when BANE is off).
        bane: BANE's picks (``contrast.bane.BanePicks``; none when BANE is off).
        pool: (L,) pixel indices of the layer's shared random pool (a uniform sample without
            replacement of its labelled pixels, in random order).
        topup: (K, L) bool, the pool pixels each anchor takes as its random negatives.
    """

    maps: BaneMaps | None
    bane: BanePicks
    pool: torch.Tensor
    topup: torch.Tensor

    @property
    def index(self) -> torch.Tensor:
        """(K, M) per-anchor negatives, BANE's picks first (nearest first), then the top-up."""
        return self._per_anchor()[0]

    @property
    def valid(self) -> torch.Tensor:
        """(K, M) bool, a real negative."""
        return self._per_anchor()[1]

    @property
    def is_bane(self) -> torch.Tensor:
        """(K, M) bool, picked by BANE (the rest of ``valid`` is random top-up)."""
        return self._per_anchor()[2]

    def _per_anchor(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        num_classes, size = self.topup.shape[0], int(self.bane.counts.max()) + int(self.topup.sum(1).max())
        bane, topup = self.bane, self.topup
        rank = torch.arange(bane.index.numel(), device=bane.index.device) - (bane.counts.cumsum(0) - bane.counts)[bane.anchor]
        rows = torch.cat([bane.anchor[bane.valid], torch.nonzero(topup)[:, 0]])
        cols = torch.cat([rank[bane.valid], bane.counts[:, None].expand_as(topup)[topup] + topup.long().cumsum(1)[topup] - 1])
        pixels = torch.cat([bane.index[bane.valid], self.pool[None].expand_as(topup)[topup]])
        index = torch.zeros(num_classes, size, dtype=torch.long, device=pixels.device)
        valid, is_bane = torch.zeros_like(index, dtype=torch.bool), torch.zeros_like(index, dtype=torch.bool)
        index[rows, cols], valid[rows, cols] = pixels, True
        is_bane[rows[:int(bane.valid.sum())], cols[:int(bane.valid.sum())]] = True
        return index, valid, is_bane


def select_negatives(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, max_negatives: int,
                     bane_ratio: float | None, ignore_index: int = 255,
                     generator: torch.Generator | None = None, anchored: torch.Tensor | None = None,
                     pool_size: int | None = None) -> NegativeSelection:
    """BANE maps and negatives for every anchor at one layer: the one code path the loss and
    ``visualize-boundaries`` share.

    Args:
        pred: (B, h, w) detached prediction resized (nearest) to the layer.
        labels: (B, h, w) ground truth at the layer.
        bane_ratio: BANE's ratio (the share of each error region taken), or None for random
            negatives only.
        anchored: (K,) bool, the classes with an anchor (default: all).
        pool_size: pixels in the top-up pool (default: ``POOL_FACTOR`` x ``max_negatives``, at
            most the layer's pixels).
    """
    flat = labels.reshape(-1)
    anchored = torch.ones(num_classes, dtype=torch.bool, device=flat.device) if anchored is None else anchored
    maps, bane = None, _no_picks(flat, num_classes)
    if bane_ratio is not None:
        ranked = ranked_errors(pred, labels, num_classes, bane_ratio, ignore_index)
        maps, bane = ranked.maps, bane_picks(ranked, max_negatives, anchored, bane_ratio)
    labelled = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    size = min(flat.numel(), pool_size or POOL_FACTOR * max_negatives)
    keys = torch.rand(flat.numel(), device=flat.device, generator=generator) + (~labelled).float() * 2
    pool = keys.topk(size, largest=False, sorted=True).indices  # labelled pixels first, in random order
    topup = _topup(flat[pool], labelled[pool], pool, maps, anchored, max_negatives - bane.counts)
    return NegativeSelection(maps, bane, pool, topup)


def _topup(pool_labels, pool_labelled, pool, maps: BaneMaps | None, anchored: torch.Tensor,
           room: torch.Tensor) -> torch.Tensor:
    """(K, L) bool: per anchor, the first pool pixels of other classes (and not its own BANE picks)
    up to ``room`` (K,), by a cumulative count along the pool."""
    classes = torch.arange(anchored.numel(), device=pool.device)[:, None]
    eligible = pool_labelled[None] & (pool_labels[None] != classes) & anchored[:, None]
    if maps is not None:  # a BANE pick of anchor n is its negative already
        picked = (maps.selected.reshape(-1) & maps.error.reshape(-1))[pool]
        eligible &= ~(picked[None] & (maps.pred.reshape(-1)[pool][None] == classes))
    return eligible & (eligible.long().cumsum(1) <= room[:, None])


def _no_picks(flat: torch.Tensor, num_classes: int) -> BanePicks:
    empty = flat.new_zeros(0)
    return BanePicks(empty, empty, empty.bool(), flat.new_zeros(num_classes))
