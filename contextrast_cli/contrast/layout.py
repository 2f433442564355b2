"""Where a loss call's layers lie in its flat arrays, built once per geometry (cached).

The loss samples all its layers at once: their label maps are concatenated into one flat (P,)
array, and the anchors of layer l are numbered l x K + k (G = I x K of them). The samples live in
static slots: per layer, its positives' slots, its BANE picks' slots, then the slots of the top-up
taken beyond the pool (the *pair* slots, each a pixel with the one anchor it is read against),
and a pool of L top-up candidates per layer.
Because every size is fixed by the shapes and settings alone, one step needs no host
synchronisation, and the tensors that say where things lie are made once. Where reading a count
costs nothing (the CPU), ``Layout.sized`` gives the same layout with slots of the batch's real
sizes: no padding rows are gathered, multiplied or scattered.
"""

import copy
import math
from functools import lru_cache

import torch

POOL_FACTOR = 4  # the top-up pool holds POOL_FACTOR x max_negatives pixels (all of a smaller layer)
KINDS = 3  # pair slots per layer: positives (0), BANE picks (1), top-up beyond the pool (2)

Shapes = tuple[tuple[int, int, int], ...]


class Layout:
    """The static geometry of one stack of layers.

    Attributes:
        shapes: each layer's (B, h, w); ``sizes`` its pixels, ``offsets`` where they start in (P,).
        layer, local: (P,) each pixel's layer and its index within the layer (also: the layer of the
            p-th position of a layer-major order, and that position within its layer).
        past_pool, in_tail: (P,) for the p-th position of a layer-major order, its place past its
            layer's pool (0 inside it) and whether it lies past it; ``tail_start`` (I,) where each
            layer's positions past the pool begin.
        pos_sizes, bane_sizes, spill_sizes: pair slots per layer for positives (min(P_l, K x
            max_positives)), BANE picks (min(P_l, K x max_negatives, ceil(ratio x P_l) + 2K): the
            picks can number no more, each ceil(ratio |E^n|) being below ratio |E^n| + 1 and the
            E^n disjoint) and the top-up taken beyond the pool (``spill_slots``); after ``sized``,
            a batch's real counts.
        pos_start, bane_start, spill_start: (I,) where each layer's segments start.
        slot_rank, slot_positive: (M,) each pair slot's rank in its segment and whether it is a
            positive's slot (else a negative's); ``slot_group`` (M,) its segment, layer x 3 + kind
            (0 positive, 1 BANE, 2 top-up beyond the pool); ``slot_layer`` (M,) its layer;
            ``slot_anchor0`` (M,) its layer's first anchor id; ``spill_slot_layer``,
            ``spill_slot_rank`` (S,) each beyond-the-pool slot's layer and rank in its segment.
        pool_sizes: L_l = min(P_l, pool size); ``pool_at`` (I, L) positions of each layer's pool in
            the layer-major random order of the pixels (short pools repeat their last);
            ``pool_valid`` (I, L) the real ones.
    """

    def __init__(self, shapes: Shapes, num_classes: int, max_positives: int, max_negatives: int,
                 bane_ratio: float | None, pool_size: int | None, device: str) -> None:
        k = num_classes
        self.shapes, self.num_classes = shapes, k
        self.sizes = tuple(b * h * w for b, h, w in shapes)
        self.offsets = tuple(sum(self.sizes[:i]) for i in range(len(shapes)))
        self.pos_sizes = tuple(min(p, k * max_positives) for p in self.sizes)
        self.bane_sizes = tuple(0 if bane_ratio is None else
                                min(p, k * max_negatives, math.ceil(bane_ratio * p) + 2 * k) for p in self.sizes)
        self.pool_sizes = tuple(min(p, pool_size or POOL_FACTOR * max_negatives) for p in self.sizes)
        spill_sizes = tuple(spill_slots(p, pool, max_negatives, k) for p, pool in zip(self.sizes, self.pool_sizes))
        layer = torch.repeat_interleave(torch.arange(len(shapes)), torch.tensor(self.sizes))
        width = max(self.pool_sizes)
        pool_rank = torch.arange(width)[None].expand(len(shapes), width)
        lengths = torch.tensor(self.pool_sizes)[:, None]
        pool_at = torch.tensor(self.offsets)[:, None] + torch.minimum(pool_rank, lengths - 1)
        local = torch.arange(layer.numel()) - torch.tensor(self.offsets)[layer]
        past = local - torch.tensor(self.pool_sizes)[layer]  # a position's place past its layer's pool
        tensors = {"layer": layer, "local": local, "pool_at": pool_at, "pool_valid": pool_rank < lengths,
                   "classes": torch.arange(k)[None, :, None], "past_pool": past.clamp_min(0), "in_tail": past >= 0,
                   "tail_start": torch.tensor(self.offsets) + torch.tensor(self.pool_sizes)}
        for name, value in tensors.items():
            setattr(self, name, value.to(device))
        self._slots(self.pos_sizes, self.bane_sizes, spill_sizes)

    def _slots(self, pos_sizes: tuple[int, ...], bane_sizes: tuple[int, ...], spill_sizes: tuple[int, ...]) -> None:
        """The pair slots' geometry for these per-layer sizes."""
        self.pos_sizes, self.bane_sizes, self.spill_sizes = pos_sizes, bane_sizes, spill_sizes
        layers, k, device = len(self.shapes), self.num_classes, self.layer.device
        lengths = torch.tensor([sizes[i] for i in range(layers) for sizes in (pos_sizes, bane_sizes, spill_sizes)])
        self.pairs = sum(pos_sizes) + sum(bane_sizes) + sum(spill_sizes)
        starts = (lengths.cumsum(0) - lengths).view(layers, KINDS)
        slot_segment = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)  # layer x 3 + kind
        slot_rank = torch.arange(self.pairs) - (lengths.cumsum(0) - lengths)[slot_segment]
        spill = torch.tensor(spill_sizes)
        spill_slot_layer = torch.repeat_interleave(torch.arange(layers), spill)
        spill_slot_rank = torch.arange(sum(spill_sizes)) - (spill.cumsum(0) - spill)[spill_slot_layer]
        tensors = {"pos_start": starts[:, 0], "bane_start": starts[:, 1], "spill_start": starts[:, 2],
                   "spill_slot_layer": spill_slot_layer, "spill_slot_rank": spill_slot_rank,
                   "slot_rank": slot_rank, "slot_positive": slot_segment % KINDS == 0,
                   "slot_layer": slot_segment // KINDS, "slot_anchor0": slot_segment // KINDS * k,
                   "slot_group": slot_segment}
        for name, value in tensors.items():
            setattr(self, name, value.to(device))

    def sized(self, pos_sizes: tuple[int, ...], bane_sizes: tuple[int, ...], spill_sizes: tuple[int, ...]) -> "Layout":
        """This layout with pair slots of exactly these per-layer sizes (the pixels' and pools'
        geometry shared, not rebuilt): slots sized by a batch's real samples."""
        other = copy.copy(self)
        other._slots(tuple(pos_sizes), tuple(bane_sizes), tuple(spill_sizes))
        return other

    def pair_slices(self, index: int) -> tuple[slice, slice, slice]:
        """Layer ``index``'s positive, BANE and beyond-the-pool top-up slots in the pair arrays."""
        start = sum(self.pos_sizes[:index]) + sum(self.bane_sizes[:index]) + sum(self.spill_sizes[:index])
        middle = start + self.pos_sizes[index]
        end = middle + self.bane_sizes[index]
        return slice(start, middle), slice(middle, end), slice(end, end + self.spill_sizes[index])

    def layer_pairs(self, index: int) -> int:
        """Pair slots of layer ``index``, all kinds."""
        return self.pos_sizes[index] + self.bane_sizes[index] + self.spill_sizes[index]

    def pixels(self, index: int) -> slice:
        """Layer ``index``'s pixels in the flat (P,) arrays."""
        return slice(self.offsets[index], self.offsets[index] + self.sizes[index])


def spill_slots(pixels: int, pool: int, max_negatives: int, num_classes: int) -> int:
    """Slots for the top-up that anchors take beyond a layer's pool of ``pool`` pixels.

    An anchor n falls short in the pool only when fewer than ``max_negatives`` of its pixels are
    eligible (another class, not one of its BANE picks): its own class and its picks then hold
    more than pool - max_negatives of the pool. Every pool pixel is of one class and picked for
    at most one anchor, so these holdings sum to at most 2 x pool, and fewer than
    2 x pool / (pool - max_negatives) anchors fall short (at most 2 with the default pool of
    4 x max_negatives), each by at most ``max_negatives`` and by the pixels beyond the pool."""
    beyond = pixels - pool
    if beyond <= 0:
        return 0
    short = num_classes if pool <= max_negatives else min(num_classes, math.ceil(2 * pool / (pool - max_negatives)) - 1)
    return short * min(max_negatives, beyond)


@lru_cache(maxsize=8)
def layout(shapes: Shapes, num_classes: int, max_positives: int, max_negatives: int, bane_ratio: float | None,
           pool_size: int | None, device: str) -> Layout:
    """The ``Layout`` of these shapes and settings on ``device`` (made once, then reused)."""
    return Layout(shapes, num_classes, max_positives, max_negatives, bane_ratio, pool_size, device)
