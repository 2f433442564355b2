"""Where a loss call's layers lie in its flat arrays, built once per geometry (cached).

The loss samples all its layers at once: their label maps are concatenated into one flat (P,)
array, and the anchors of layer l are numbered l x K + k (G = I x K of them). The samples live in
static slots: per layer, its positives' slots then its BANE picks' slots (the *pair* slots, each a
pixel with the one anchor it is read against), and a pool of L top-up candidates per layer.
Because every size is fixed by the shapes and settings alone, one step needs no host
synchronisation, and the tensors that say where things lie are made once.
"""

import math
from functools import lru_cache

import torch

POOL_FACTOR = 4  # the top-up pool holds POOL_FACTOR x max_negatives pixels (all of a smaller layer)

Shapes = tuple[tuple[int, int, int], ...]


class Layout:
    """The static geometry of one stack of layers.

    Attributes:
        shapes: each layer's (B, h, w); ``sizes`` its pixels, ``offsets`` where they start in (P,).
        layer, local: (P,) each pixel's layer and its index within the layer.
        pos_sizes, bane_sizes: pair slots per layer for positives (min(P_l, K x max_positives)) and
            BANE picks (min(P_l, K x max_negatives, ceil(ratio x P_l) + 2K): the picks can number no
            more, each ceil(ratio |E^n|) being below ratio |E^n| + 1 and the E^n disjoint).
        pos_start, bane_start: (I,) where each layer's positive / BANE slots start.
        slot_rank, slot_positive: (M,) each pair slot's rank in its segment and whether it is a
            positive's slot (else a BANE pick's); ``slot_group`` (M,) its segment, layer x 2 + (0
            positive, 1 BANE); ``slot_anchor0`` (M,) its layer's first anchor id.
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
        layer = torch.repeat_interleave(torch.arange(len(shapes)), torch.tensor(self.sizes))
        self.pairs = sum(self.pos_sizes) + sum(self.bane_sizes)
        starts = [sum(self.pos_sizes[:i]) + sum(self.bane_sizes[:i]) for i in range(len(shapes))]
        pos_start = torch.tensor(starts)
        bane_start = pos_start + torch.tensor(self.pos_sizes)
        segments = [(i, n, positive) for i in range(len(shapes))
                    for n, positive in ((self.pos_sizes[i], True), (self.bane_sizes[i], False))]
        slot_layer = torch.cat([torch.full((n,), i) for i, n, _ in segments])
        slot_rank = torch.cat([torch.arange(n) for _, n, _ in segments])
        slot_positive = torch.cat([torch.full((n,), positive) for _, n, positive in segments])
        width = max(self.pool_sizes)
        self.rows = self.pairs + len(shapes) * width  # the sampled rows: every pair slot, then each layer's pool
        pool_rank = torch.arange(width)[None].expand(len(shapes), width)
        lengths = torch.tensor(self.pool_sizes)[:, None]
        pool_at = torch.tensor(self.offsets)[:, None] + torch.minimum(pool_rank, lengths - 1)
        tensors = {"layer": layer, "local": torch.arange(layer.numel()) - torch.tensor(self.offsets)[layer],
                   "pos_start": pos_start, "bane_start": bane_start, "slot_rank": slot_rank,
                   "slot_positive": slot_positive, "slot_anchor0": slot_layer * k,
                   "slot_group": slot_layer * 2 + (~slot_positive).long(), "pool_at": pool_at,
                   "pool_valid": pool_rank < lengths, "classes": torch.arange(k)[None, :, None]}
        for name, value in tensors.items():
            setattr(self, name, value.to(device))

    def pair_slices(self, index: int) -> tuple[slice, slice]:
        """Layer ``index``'s positive slots and BANE slots in the pair arrays."""
        start = sum(self.pos_sizes[:index]) + sum(self.bane_sizes[:index])
        middle = start + self.pos_sizes[index]
        return slice(start, middle), slice(middle, middle + self.bane_sizes[index])

    def row_slices(self) -> tuple[list[slice], list[slice]]:
        """Per layer, the rows of its pair slots and of its pool in the table of sampled rows
        (``contrast.rows.sampled_layers``): every layer's pair slots, then every layer's pool."""
        width = (self.rows - self.pairs) // len(self.shapes)
        pairs = [slice(p.start, b.stop) for p, b in map(self.pair_slices, range(len(self.shapes)))]
        return pairs, [slice(self.pairs + i * width, self.pairs + (i + 1) * width) for i in range(len(self.shapes))]

    def pixels(self, index: int) -> slice:
        """Layer ``index``'s pixels in the flat (P,) arrays."""
        return slice(self.offsets[index], self.offsets[index] + self.sizes[index])


@lru_cache(maxsize=8)
def layout(shapes: Shapes, num_classes: int, max_positives: int, max_negatives: int, bane_ratio: float | None,
           pool_size: int | None, device: str) -> Layout:
    """The ``Layout`` of these shapes and settings on ``device`` (made once, then reused)."""
    return Layout(shapes, num_classes, max_positives, max_negatives, bane_ratio, pool_size, device)
