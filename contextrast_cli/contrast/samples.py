"""What the loss samples, as flat fixed-length lists of pixels (never a classes x pixels matrix):
per layer ``Positives`` and ``NegativeSelection`` (the public, per-layer view that figures and the
API use), and ``Samples``, all layers of one loss call stacked in the slots of a
``contrast.layout.Layout``."""

from dataclasses import dataclass

import torch

from contextrast_cli.contrast.bane import BaneMaps, BanePicks
from contextrast_cli.contrast.layout import Layout
from contextrast_cli.contrast.plain import LayerSamples


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


@dataclass
class NegativeSelection:
    """The negatives one layer contributes: BANE's picks and the random top-up, from a shared pool
    and, for an anchor that the pool leaves short, from the same random order past it.

    Attributes:
        maps: the layer's BANE maps (None when BANE is off).
        bane: BANE's picks (``contrast.bane.BanePicks``; none when BANE is off).
        pool: (L,) pixel indices of the layer's shared random pool (a uniform sample without
            replacement of its labelled pixels, in random order).
        topup: (K, L) bool, the pool pixels each anchor takes as its random negatives.
        spill: the top-up taken past the pool (a ``BanePicks`` list of (pixel, anchor) pairs;
            empty unless one class holds most of the layer).
    """

    maps: BaneMaps | None
    bane: BanePicks
    pool: torch.Tensor
    topup: torch.Tensor
    spill: BanePicks | None = None

    def random(self, anchor: int) -> torch.Tensor:
        """Anchor ``anchor``'s random top-up (pixel indices): its pool pixels, then those past the pool."""
        extra = self.spill.index[self.spill.valid & (self.spill.anchor == anchor)] if self.spill is not None else \
            self.pool.new_zeros(0)
        return torch.cat([self.pool[self.topup[anchor]], extra])

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
        bane, topup = self.bane, self.topup
        spill = self.spill if self.spill is not None else BanePicks(*(bane.index[:0],) * 2, bane.valid[:0],
                                                                     torch.zeros_like(bane.counts))
        in_pool = topup.sum(1)
        num_classes, size = topup.shape[0], int((bane.counts + in_pool + spill.counts).max())
        rank = torch.arange(bane.index.numel(), device=bane.index.device) - (bane.counts.cumsum(0) - bane.counts)[bane.anchor]
        spill_rank = torch.arange(spill.index.numel(), device=bane.index.device) - \
            (spill.counts.cumsum(0) - spill.counts)[spill.anchor]
        rows = torch.cat([bane.anchor[bane.valid], torch.nonzero(topup)[:, 0], spill.anchor[spill.valid]])
        cols = torch.cat([rank[bane.valid], bane.counts[:, None].expand_as(topup)[topup] + topup.long().cumsum(1)[topup] - 1,
                          (bane.counts + in_pool)[spill.anchor][spill.valid] + spill_rank[spill.valid]])
        pixels = torch.cat([bane.index[bane.valid], self.pool[None].expand_as(topup)[topup], spill.index[spill.valid]])
        index = torch.zeros(num_classes, size, dtype=torch.long, device=pixels.device)
        valid, is_bane = torch.zeros_like(index, dtype=torch.bool), torch.zeros_like(index, dtype=torch.bool)
        index[rows, cols], valid[rows, cols] = pixels, True
        is_bane[rows[:int(bane.valid.sum())], cols[:int(bane.valid.sum())]] = True
        return index, valid, is_bane


@dataclass
class Samples:
    """All layers' samples of one loss call, in the static slots of ``layout``.

    Attributes:
        index: (M,) pair slots: each layer's positives, its BANE picks, then the top-up taken past
            its pool, as pixel indices within the layer; ``anchor`` (M,) the anchor id (layer x K +
            class) each is read against; ``valid`` (M,) the real ones.
        pos_counts, bane_counts, spill_counts: (G,) positives, BANE picks and top-up past the pool
            per anchor; ``totals`` (I, 3) per layer.
        pool: (I, L) each layer's top-up candidates (pixel indices within the layer; past L_l a
            repeat, never taken; with slots sized to the batch, cut after the last one taken);
            ``topup`` (I, K, L) those each anchor takes.
        maps: BANE's maps over the flat (P,) pixels, or None without BANE.
    """

    layout: Layout
    index: torch.Tensor
    anchor: torch.Tensor
    valid: torch.Tensor
    pos_counts: torch.Tensor
    bane_counts: torch.Tensor
    spill_counts: torch.Tensor
    totals: torch.Tensor
    pool: torch.Tensor
    topup: torch.Tensor
    maps: BaneMaps | None

    def layer(self, index: int) -> tuple[Positives, NegativeSelection]:
        """Layer ``index``'s samples as the public per-layer types (classes 0..K-1, its own pixels)."""
        lay, k = self.layout, self.layout.num_classes
        pos, bane, spill = lay.pair_slices(index)
        counts = [c.view(-1, k)[index] for c in (self.pos_counts, self.bane_counts, self.spill_counts)]
        positives = Positives(self.index[pos], self.anchor[pos] - index * k, self.valid[pos], counts[0])
        picks, past = (BanePicks(self.index[part], self.anchor[part] - index * k, self.valid[part], count)
                       for part, count in ((bane, counts[1]), (spill, counts[2])))
        maps = None if self.maps is None else self.maps.part(lay.shapes[index], lay.pixels(index))
        width = min(lay.pool_sizes[index], self.pool.shape[1])
        return positives, NegativeSelection(maps, picks, self.pool[index, :width], self.topup[index, :, :width], past)

    @property
    def rows(self) -> int:
        """Rows of the table of sampled embeddings: every pair slot, then each layer's pool."""
        return self.layout.pairs + self.pool.numel()

    def as_plain(self) -> list[LayerSamples]:
        """Every layer's samples in ``contrast.plain``'s form: per class, its positives and its
        negatives (BANE picks, then the top-up from the pool and from past it)."""
        out = []
        for index in range(len(self.layout.shapes)):
            positives, negatives = self.layer(index)
            k = positives.counts.numel()
            pos = [positives.index[positives.valid & (positives.anchor == n)] for n in range(k)]
            bane = negatives.bane
            neg = [torch.cat([bane.index[bane.valid & (bane.anchor == n)], negatives.random(n)]) for n in range(k)]
            out.append(LayerSamples(pos, neg))
        return out

    def row_slices(self) -> tuple[list[slice], list[slice]]:
        """Per layer, the rows of its pair slots and of its pool in that table."""
        lay, width = self.layout, self.pool.shape[1]
        pairs = [slice(p.start, s.stop) for p, _, s in map(lay.pair_slices, range(len(lay.shapes)))]
        return pairs, [slice(lay.pairs + i * width, lay.pairs + (i + 1) * width) for i in range(len(lay.shapes))]
