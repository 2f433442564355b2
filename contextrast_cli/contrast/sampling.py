"""Sample, then gather: the anchors, positives and negatives of every layer of one loss call as
flat, fixed-length lists of pixels, never a (classes x pixels) matrix, with one set of operators
for all layers (their label maps concatenated, anchor l x K + k for class k at layer l):

* anchors: every class present in the batch, or, above a cap, that many of them drawn at
  random with probability independent of their pixel count (``choose_anchors``);
* positives: one sort of the pixels by (anchor, random key); each anchor's first
  ``max_positives``;
* negatives: BANE's picks (``contrast.bane``: one sort by (anchor, distance)), then a random
  top-up from one shared pool of pixels per layer: per anchor, the first pool pixels of other
  classes (and not already its BANE picks) up to ``max_negatives`` minus its BANE picks, found
  with a cumulative count along the pool.

Sizes are static (``contrast.layout``; no host synchronisation); ``valid`` masks say what is real.
``sample_positives`` and ``select_negatives`` are the one-layer views that figures and the API use.
"""

import torch
import torch.distributed

from contextrast_cli.contrast.bane import BaneMaps, count_ids, fill_slots, ranked_errors
from contextrast_cli.contrast.consts import fill
from contextrast_cli.contrast.layout import POOL_FACTOR, Layout, layout
from contextrast_cli.contrast.samples import NegativeSelection, Positives, Samples

RANDOM_BITS = 40  # random sort keys: integers below 2^40, above them the group (or layer)

__all__ = ["BaneMaps", "NegativeSelection", "Positives", "choose_anchors", "count_ids", "present_classes", "sample_positives",
           "sample_layers", "sample_stacked", "select_negatives", "shuffle_within_groups", "Samples", "POOL_FACTOR"]


def shuffle_within_groups(groups: torch.Tensor, num_groups: int,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random order of the elements inside each group, by one sort of (group, random score):
    an integer key, group x 2^40 + a random 40-bit score (integer keys sort several times faster
    than floating-point ones; two equal scores in a group, about P^2 / 2^41, tie in either order).

    Args:
        groups: (P,) group ids in [0, num_groups), num_groups < 2^23.

    Returns:
        order (P,): element indices, grouped by ascending id, shuffled inside each group;
        counts (num_groups,) elements per group (group g starts at ``cumsum(counts)[g] - counts[g]``).
    """
    score = torch.randint(1 << RANDOM_BITS, (groups.numel(),), device=groups.device, generator=generator)
    order = torch.argsort(groups.long() * (1 << RANDOM_BITS) + score)
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


def sample_layers(labels: list[torch.Tensor], preds: list[torch.Tensor] | None, num_classes: int,
                  max_positives: int, max_negatives: int, bane_ratio: float | None, ignore_index: int = 255,
                  anchored: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  pool_size: int | None = None, static_slots: bool | None = None) -> Samples:
    """Positives and negatives of every layer at once.

    Args:
        labels: per layer (B, h, w) ground truth at the layer.
        preds: per layer (B, h, w) detached prediction resized (nearest) to it (None without BANE).
        bane_ratio: BANE's ratio (the share of each error region taken), or None for random
            negatives only.
        anchored: (I, K) bool, the classes with an anchor at each layer (default: all).
        pool_size: pixels in each layer's top-up pool (default: ``POOL_FACTOR`` x ``max_negatives``,
            at most the layer's pixels).
        static_slots: as ``sample_stacked``.
    """
    shapes = tuple((1,) * (3 - lab.dim()) + tuple(lab.shape) for lab in labels)  # (B, h, w) each
    flat = torch.cat([lab.reshape(-1) for lab in labels])
    bins = torch.where((flat >= 0) & (flat < num_classes) & (flat != ignore_index), flat, num_classes)
    pred = None if preds is None else torch.cat([p.reshape(-1) for p in preds])
    return sample_stacked(shapes, bins, pred, num_classes, max_positives, max_negatives, bane_ratio, anchored,
                          generator, pool_size, static_slots)


def sample_stacked(shapes: tuple[tuple[int, int, int], ...], bins: torch.Tensor, pred: torch.Tensor | None,
                   num_classes: int, max_positives: int, max_negatives: int, bane_ratio: float | None,
                   anchored: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   pool_size: int | None = None, static_slots: bool | None = None,
                   class_counts: torch.Tensor | None = None) -> Samples:
    """``sample_layers`` of layers already stacked as the loss holds them.

    Args:
        shapes: each layer's (B, h, w).
        bins: (P,) every layer's pixels one after the other, each its class or K where ignored.
        pred: (P,) the prediction at the same pixels (None without BANE).
        static_slots: True: slots of the sizes the shapes and settings allow (no host
            synchronisation: what a GPU needs); False: slots of the batch's real counts and pools
            cut after the last pixel any anchor takes (two reads of a count: free on the CPU).
            None (the default): False on the CPU, True elsewhere. The samples are the same.
        class_counts: (I, K) each layer's pixels per class, when the caller has counted them.
    """
    flat, labelled, k = bins, bins < num_classes, num_classes  # ignored pixels hold K
    static = flat.device.type != "cpu" if static_slots is None else static_slots
    lay = layout(shapes, k, max_positives, max_negatives, bane_ratio, pool_size, str(flat.device))
    anchored = flat.new_ones(len(shapes), k, dtype=torch.bool) if anchored is None else anchored
    positives, pos_counts = None, flat.new_zeros(anchored.numel())
    if max_positives > 0:
        positives = _positives(flat, labelled, lay, anchored, max_positives, generator)
        pos_counts = positives[3]
    ranked, maps, bane_counts = None, None, torch.zeros_like(pos_counts)
    if bane_ratio is not None:
        ranked = ranked_errors(pred, flat, lay.layer, shapes, k, bane_ratio, k)
        maps, bane_counts = ranked.maps, ranked.keep.clamp_max(max_negatives).mul_(anchored.view(-1))
    room = max_negatives - bane_counts.view_as(anchored)
    pool, topup, order = _pool(flat, labelled, lay, maps, anchored, room, generator)
    if class_counts is None:
        class_counts = count_ids(lay.layer * (k + 1) + flat, len(shapes) * (k + 1)).view(len(shapes), k + 1)[:, :k]
    eligible = class_counts.sum(1, keepdim=True) - class_counts - bane_counts.view_as(anchored)  # (I, K)
    spill_counts = (torch.minimum(room, eligible) * anchored - topup.sum(2)).clamp_min(0).view(-1)  # (G,)
    totals = torch.stack([counts.view(-1, k).sum(1) for counts in (pos_counts, bane_counts, spill_counts)], 1)
    if not static:  # a host read: free on the CPU
        lay = lay.sized(*zip(*totals.tolist()))
    slots = (flat.new_zeros(lay.pairs + 1), torch.cat([lay.slot_anchor0, lay.slot_anchor0.new_zeros(1)]))  # + a spare slot
    if positives is not None:
        fill_slots(slots, *positives, lay.pos_start, lay.local)
    if ranked is not None:
        fill_slots(slots, ranked.order, ranked.sorted_anchor, ranked.rank, bane_counts, lay.bane_start, lay.local)
    if sum(lay.spill_sizes):  # static: slots where a layer has pixels past its pool; sized: real ones
        _spill(slots, flat, lay, maps, order, spill_counts)
    valid = lay.slot_rank < totals.view(-1)[lay.slot_group]
    if not static:  # every layer's pool up to the last position any anchor takes (a host read)
        used = topup.any(1).any(0)  # (L,)
        width = max(1, int((used * torch.arange(1, used.numel() + 1, device=used.device)).max()))  # 1: never empty
        pool, topup = pool[:, :width], topup[:, :, :width]
    counts = (pos_counts, bane_counts, spill_counts)
    return Samples(lay, slots[0][:-1], slots[1][:-1], valid, *counts, totals, pool, topup, maps)


def _positives(flat: torch.Tensor, labelled: torch.Tensor, lay: Layout, anchored: torch.Tensor, max_positives: int,
               generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each anchored class's pixels in a random order (one sort by (anchor, random key)), as
    ``fill_slots`` takes them: the order, each position's anchor and rank within it, and the
    positives per anchor (G,), its first ``max_positives``."""
    groups = anchored.numel()
    anchor = lay.layer * lay.num_classes + flat.clamp(0, lay.num_classes - 1)
    anchor = torch.where(labelled & anchored.view(-1)[anchor], anchor, fill(anchor, groups))
    order, counts = shuffle_within_groups(anchor, groups + 1, generator)  # one sort, not a (K, P) top-k
    sorted_anchor = anchor[order]
    rank = torch.arange(order.numel(), device=flat.device) - (counts.cumsum(0) - counts)[sorted_anchor]
    return order, sorted_anchor, rank, counts[:groups].clamp_max(max_positives)


def _pool(flat: torch.Tensor, labelled: torch.Tensor, lay: Layout, maps: BaneMaps | None, anchored: torch.Tensor,
          room: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each layer's pool (I, L) (a uniform sample without replacement of its labelled pixels, in
    random order: one sort of the integer key (layer, unlabelled, random 40 bits)) and the top-up
    (I, K, L): per anchor, the first pool pixels of other classes (not its own BANE picks) up to
    ``room`` (I, K), by a cumulative count along the pool. Also the whole order (P,): every
    layer's pixels, labelled first in that random order, layer after layer."""
    keys = torch.randint(1 << RANDOM_BITS, (flat.numel(),), device=flat.device, generator=generator)
    keys += ((~labelled).long() + lay.layer * 2) << RANDOM_BITS
    order = keys.argsort()
    at = order[lay.pool_at]  # (I, L) pixels in the flat arrays
    pool_labels = flat[at][:, None, :]
    eligible = (lay.pool_valid & labelled[at])[:, None, :] & (pool_labels != lay.classes) & anchored[:, :, None]
    if maps is not None:  # a BANE pick of anchor n is its negative already
        picked = (maps.selected & maps.error)[at][:, None, :]
        eligible &= ~(picked & (maps.pred[at][:, None, :] == lay.classes))
    taken = eligible.cumsum(2, dtype=torch.int32) <= room[:, :, None]
    return lay.local[at], eligible & taken, order


def _spill(slots: tuple[torch.Tensor, torch.Tensor], flat: torch.Tensor, lay: Layout, maps: BaneMaps | None,
           order: torch.Tensor, spill: torch.Tensor) -> None:
    """The top-up an anchor still lacks after the pool (``spill`` (G,) pixels each): its next
    eligible pixels in the same random ``order`` past the pool, written into the third segment of
    each layer's pair slots. So every anchor's top-up is the first eligible pixels of one uniform
    random order (a uniform sample without replacement), whatever the class shares.

    The j-th eligible pixel of anchor n past the pool lies at tail position j + (the excluded
    pixels of n before it): its own class's pixels and its BANE picks, sorted once by (anchor,
    position) and counted with ``searchsorted``, never a (classes x pixels) table. With
    ``before`` = key - index (ascending: keys are distinct within an anchor and ``span`` exceeds
    every position and index), the excluded pixels of anchor g whose (position - rank) is at most
    j are those with ``before`` <= g x span + j - start_g."""
    groups, k, total = spill.numel(), lay.num_classes, order.numel()
    span = 3 * total + 1
    tail = lay.in_tail  # over positions of the order, not pixels
    at = flat[order]  # the class at each position (K: ignored)
    keys = [torch.where(tail & (at < k), lay.layer * k + at, fill(at, groups)) * span + lay.past_pool]
    if maps is not None:  # an anchor's BANE picks are its negatives already
        picked = (maps.selected & maps.error)[order] & tail
        keys.append(torch.where(picked, lay.layer * k + maps.pred[order], fill(at, groups)) * span + lay.past_pool)
    ranked = torch.sort(torch.cat(keys)).values
    before = ranked - torch.arange(ranked.numel(), device=ranked.device)
    ends = spill.cumsum(0)
    firsts = ends - spill
    slot_layer, rank = lay.spill_slot_layer, lay.spill_slot_rank  # (S,) each spill slot's layer and rank in it
    wanted = firsts.view(-1, k)[:, 0][slot_layer] + rank  # the slot's place in the flat order of anchors
    valid = wanted < ends.view(-1, k)[:, -1][slot_layer]
    group = torch.searchsorted(ends, wanted, right=True).clamp_max(groups - 1)
    j = wanted - firsts[group]
    start = torch.searchsorted(ranked, group * span)
    skipped = torch.searchsorted(before, group * span + j - start, right=True) - start
    position = (lay.tail_start[slot_layer] + j + skipped).clamp_max(total - 1)
    slot = torch.where(valid, lay.spill_start[slot_layer] + rank, fill(rank, slots[0].numel() - 1))
    slots[0].scatter_(0, slot, lay.local[order[position]])
    slots[1].scatter_(0, slot, group)


def sample_positives(labels: torch.Tensor, num_classes: int, max_positives: int, anchored: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> Positives:
    """Up to ``max_positives`` distinct random pixels of each (``anchored``) class, for one layer.

    Args:
        labels: (P,) class ids (anything outside [0, K) never sampled).
        anchored: (K,) bool, the classes with an anchor (default: all).

    Returns:
        ``Positives`` of min(P, K x max_positives) slots.
    """
    flat = labels.reshape(-1)
    lay = layout(((1, 1, flat.numel()),), num_classes, max_positives, 1, None, None, str(flat.device))
    anchored = flat.new_ones(1, num_classes, dtype=torch.bool) if anchored is None else anchored.view(1, -1)
    slots = (flat.new_zeros(lay.pairs + 1), flat.new_zeros(lay.pairs + 1))
    *pick, counts = _positives(flat, (flat >= 0) & (flat < num_classes), lay, anchored, max_positives, generator)
    fill_slots(slots, *pick, counts, lay.pos_start, lay.local)
    size = lay.pos_sizes[0]
    return Positives(slots[0][:size], slots[1][:size], lay.slot_rank[:size] < counts.sum(), counts)


def select_negatives(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, max_negatives: int,
                     bane_ratio: float | None, ignore_index: int = 255,
                     generator: torch.Generator | None = None, anchored: torch.Tensor | None = None,
                     pool_size: int | None = None) -> NegativeSelection:
    """BANE maps and negatives for every anchor at one layer: the loss's own sampling
    (``sample_layers``) for one layer, the view ``visualize-boundaries`` draws.

    Args:
        pred: (B, h, w) detached prediction resized (nearest) to the layer.
        labels: (B, h, w) ground truth at the layer.
        bane_ratio: BANE's ratio (the share of each error region taken), or None for random
            negatives only.
        anchored: (K,) bool, the classes with an anchor (default: all).
        pool_size: pixels in the top-up pool (default: ``POOL_FACTOR`` x ``max_negatives``, at
            most the layer's pixels).
    """
    anchored = None if anchored is None else anchored.view(1, -1)
    samples = sample_layers([labels], [pred], num_classes, 0, max_negatives, bane_ratio, ignore_index, anchored,
                            generator, pool_size)
    selection = samples.layer(0)[1]
    if selection.maps is not None:  # in the labels' own shape
        selection.maps = selection.maps.part(labels.shape)
    return selection
