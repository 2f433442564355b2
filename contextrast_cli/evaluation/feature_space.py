"""The paper's feature-space measures: intra-class spread A and inter-class separation U.

For one layer's L2-normalised embeddings (METHOD.md, end):

* A = mean over classes of the mean pairwise Euclidean distance between embeddings of the class,
  over a uniform random sample of at most ``per_class`` pixels of the class from the whole
  split (each pixel gets a random priority; the lowest ``per_class`` are kept);
* U = mean pairwise Euclidean distance between the class centroids, the means of *all* the
  class's embeddings in the split (not renormalised).

Labels are resized to each layer's size by nearest neighbour, as in training; ignored pixels
take no part. ``FeatureProbe`` measures a network's tapped encoder features (``layers``,
L2-normalised: works for any checkpoint) and, for a checkpoint trained with a contrastive
loss, its projection heads' embeddings (``embeddings``).
"""

import torch
import torch.nn.functional as F
from torch import nn


class FeatureSpaceMeter:
    """A and U of several embedding spaces (keys such as ``("layers", 2)``) over a dataset."""

    def __init__(self, num_classes: int, per_class: int = 1000, seed: int = 0) -> None:
        self.num_classes, self.per_class = num_classes, per_class
        self.seed = seed
        self.state: dict[tuple[str, int], dict] = {}

    def update(self, key: tuple[str, int], emb: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``emb`` (B, C, h, w), L2-normalised over C, with ``labels`` (B, H, W) train ids."""
        lab = F.interpolate(labels[:, None].float(), size=emb.shape[-2:], mode="nearest")[:, 0].long().flatten()
        vec = emb.float().permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
        keep = lab < self.num_classes  # ignore (255) and anything else outside the classes
        vec, lab = vec[keep], lab[keep]
        st = self.state.get(key)
        if st is None:
            gen = torch.Generator(device=vec.device).manual_seed(self.seed)
            st = self.state[key] = {"gen": gen, "sums": vec.new_zeros(self.num_classes, vec.shape[1], dtype=torch.float64),
                                    "counts": torch.zeros(self.num_classes, dtype=torch.int64, device=vec.device),
                                    "vec": vec[:0], "lab": lab[:0], "prio": vec.new_zeros(0)}
        st["sums"].index_add_(0, lab, vec.double())
        st["counts"] += torch.bincount(lab, minlength=self.num_classes)
        prio = torch.rand(len(lab), generator=st["gen"], device=vec.device)
        self._keep_lowest(st, torch.cat([st["vec"], vec]), torch.cat([st["lab"], lab]), torch.cat([st["prio"], prio]))

    def _keep_lowest(self, st: dict, vec: torch.Tensor, lab: torch.Tensor, prio: torch.Tensor) -> None:
        """Keep, per class, the ``per_class`` samples of lowest priority (a uniform random subset)."""
        order = torch.argsort(lab.double() * 2 + prio.double())  # by class, then by priority
        lab_sorted = lab[order]
        first = torch.searchsorted(lab_sorted, lab_sorted, right=False)  # position of the class's first sample
        rank = torch.arange(len(order), device=lab.device) - first
        kept = order[rank < self.per_class]
        st["vec"], st["lab"], st["prio"] = vec[kept], lab[kept], prio[kept]

    def compute(self, classes: tuple[str, ...]) -> dict:
        """``{space: {layer: {"A", "U", "classes", "pixels", "per_class"}}}`` (``classes``: how many
        have a centroid; ``pixels``: the samples behind A)."""
        out: dict[str, dict] = {}
        for (space, layer), st in sorted(self.state.items()):
            vec, lab = st["vec"].double().cpu(), st["lab"].cpu()
            spreads = [torch.pdist(vec[lab == n]).mean() for n in range(self.num_classes) if (lab == n).sum() > 1]
            present = st["counts"].cpu() > 0
            centroids = (st["sums"].cpu() / st["counts"].cpu().clamp_min(1)[:, None])[present]
            out.setdefault(space, {})[str(layer)] = {
                "A": float(torch.stack(spreads).mean()) if spreads else None,
                "U": float(torch.pdist(centroids).mean()) if len(centroids) > 1 else None,
                "classes": int(present.sum()),
                "pixels": len(lab), "per_class": self.per_class}
        return out


class FeatureProbe:
    """Feeds a network's tapped features (and its heads' embeddings) to a ``FeatureSpaceMeter``.

    Args:
        model: a ``Segmentor`` (its ``forward(x, with_features=True)`` returns the taps in eval mode).
        heads: layer (1-based) -> projection head, from a contrastive checkpoint; None for CE.
        criterion: that checkpoint's contrastive loss (its anchors are what the analyses compare with).
    """

    def __init__(self, model: nn.Module, meter: FeatureSpaceMeter, heads: dict[int, nn.Module] | None = None,
                 criterion: nn.Module | None = None) -> None:
        self.model, self.meter, self.heads, self.criterion = model, meter, heads or {}, criterion

    @torch.no_grad()
    def update(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.update_taps(self.model(images, with_features=True)["features"], labels)

    @torch.no_grad()
    def spaces(self, taps: list[torch.Tensor]) -> dict[str, dict[int, torch.Tensor]]:
        """The unit embeddings (B, D, h, w) of each space and layer: ``layers`` (the taps
        L2-normalised) and, with heads, ``embeddings`` (the projection heads' outputs)."""
        out = {"layers": {layer: F.normalize(feat.float(), dim=1) for layer, feat in enumerate(taps, start=1)}}
        if self.heads:
            out["embeddings"] = {layer: head(taps[layer - 1]).float() for layer, head in self.heads.items()}
        return out

    def update_taps(self, taps: list[torch.Tensor], labels: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
        """Measure already computed taps (one forward shared with other measures); returns ``spaces``."""
        spaces = self.spaces(taps)
        for space, layers in spaces.items():
            for layer, emb in layers.items():
                self.meter.update((space, layer), emb, labels)
        return spaces
