"""How hard BANE's negatives are: the mean cosine similarity of misclassified pixels to the class
anchors against their distance from the error boundary (Contextrast++ Fig. 14).

For each image and each layer, with the ground truth and the prediction resized to the layer as
the loss resizes them (``contrast.grids.resize_labels``), BANE's maps (``contrast.bane.bane_maps``:
the error pixels E^n, predicted n but labelled otherwise, and each one's exact Euclidean distance
d >= 1, in layer cells, to the nearest pixel outside its E^n) say which pixels are misclassified
and how far inside their error region they lie. The anchors are the loss's, from the image's own
pixels (``analysis_anchors``: the batch is the one image, as in ``visualize-boundaries``). For every
error pixel p of E^n with unit embedding v_p the curve records

* ``negative``: cos(v_p, a_n), the anchor p is a BANE negative of (its predicted class; only
  where n is labelled in the image, so that a_n exists), and
* ``own``: cos(v_p, a_y), the anchor of its labelled class y,

averaged over the split in distance bins [1, 2), [2, 3), ..., [B, inf) (B = ``max_distance``).
"""

import math

import torch
import torch.nn.functional as F

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.contrast.bane import bane_maps
from contextrast_cli.contrast.ccl import class_means
from contextrast_cli.contrast.grids import resize_labels

TARGETS = ("negative", "own")


def analysis_anchors(embs: dict[int, torch.Tensor], labels: torch.Tensor, num_classes: int,
                     update=None) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """The class anchors of one batch as the loss forms them, per layer: the class means of the
    embeddings over the labelled pixels (``contrast.ccl.class_means``), then, with ``update`` (the
    loss's ``cross_layer_anchors``: Contextrast's weighted sum or Contextrast++'s fusion modules)
    and layers of one width (the projection heads'), its cross-layer update and L2 normalisation;
    otherwise each layer's means L2-normalised. The one place the analyses take anchors from.

    Args:
        embs: layer -> (B, D, h, w) unit embeddings, shallow to deep.
        labels: (B, H, W) ground truth at image size.

    Returns:
        layer -> (K, D) unit anchors, and layer -> (K,) labelled pixels per class (0: no anchor).
    """
    means, counts = {}, {}
    for layer, emb in embs.items():
        small = resize_labels(labels, emb.shape[-2:])
        means[layer], counts[layer] = class_means(emb.flatten(2), small.flatten(1), num_classes)
    layers = list(embs)
    if update is not None and len({m.shape[-1] for m in means.values()}) == 1:
        anchors = update(torch.stack([means[i] for i in layers]), torch.stack([counts[i] for i in layers]))
        return dict(zip(layers, anchors.unbind())), counts
    return {layer: F.normalize(m, dim=-1) for layer, m in means.items()}, counts


def error_cosines(emb: torch.Tensor, label: torch.Tensor, pred: torch.Tensor, anchors: torch.Tensor,
                  counts: torch.Tensor, ratio: float = 0.5) -> dict[str, torch.Tensor]:
    """The error pixels of one image at one layer: their distance and their two cosines.

    Args:
        emb: (D, h, w) unit embeddings. label, pred: (h, w) train ids at the layer's size.
        anchors: (K, D) unit anchors; counts: (K,) pixels behind each (0: the class has none).

    Returns:
        ``distance`` (N,), ``negative`` (N,) (NaN where the predicted class has no anchor) and
        ``own`` (N,) for the N error pixels.
    """
    maps = bane_maps(pred[None], label[None], anchors.shape[0], ratio, IGNORE_INDEX)
    error = maps.error[0]
    vectors = emb.permute(1, 2, 0)[error]  # (N, D)
    wrong, right = pred[error], label[error]
    negative = (vectors * anchors[wrong]).sum(1)
    return {"distance": maps.distance[0][error], "own": (vectors * anchors[right]).sum(1),
            "negative": torch.where(counts[wrong] > 0, negative, torch.full_like(negative, math.nan))}


class SimilarityMeter:
    """The curves of every space and layer over a split, as sums and counts per distance bin.

    Args:
        update: the loss's ``cross_layer_anchors`` (None: per-layer means, no update).
        ratio: BANE's ratio (does not change the distances; kept as the loss's call).
        max_distance: B, the first distance of the last, open bin.
    """

    def __init__(self, num_classes: int, update=None, ratio: float = 0.5, max_distance: int = 8) -> None:
        self.num_classes, self.anchor_update, self.ratio, self.bins = num_classes, update, ratio, max_distance
        self.sums: dict[tuple[str, int], torch.Tensor] = {}  # (2 targets, 2 [sum, count], bins) float64

    def update(self, spaces: dict[str, dict[int, torch.Tensor]], labels: torch.Tensor, pred: torch.Tensor) -> None:
        """Add a batch: ``spaces`` (space -> layer -> (B, D, h, w) unit embeddings), ``labels`` and
        ``pred`` (B, H, W) at image size; anchors are taken per image."""
        for space, embs in spaces.items():
            for b in range(labels.shape[0]):  # per image: its own anchors
                one = {layer: emb[b:b + 1].float() for layer, emb in embs.items()}
                anchors, counts = analysis_anchors(one, labels[b:b + 1], self.num_classes,
                                                   self.anchor_update if space == "embeddings" else None)
                for layer, emb in one.items():
                    size = emb.shape[-2:]
                    found = error_cosines(emb[0], resize_labels(labels[b:b + 1], size)[0].long(),
                                          resize_labels(pred[b:b + 1], size)[0].long(), anchors[layer],
                                          counts[layer], self.ratio)
                    self._add((space, layer), found)

    def _add(self, key: tuple[str, int], found: dict[str, torch.Tensor]) -> None:
        sums = self.sums.setdefault(key, torch.zeros(len(TARGETS), 2, self.bins, dtype=torch.float64))
        index = found["distance"].floor().clamp(1, self.bins).long().cpu() - 1  # bin of [d, d + 1), last open
        for row, target in enumerate(TARGETS):
            value = found[target].double().cpu()
            keep = ~value.isnan()
            sums[row, 0].index_add_(0, index[keep], value[keep])
            sums[row, 1].index_add_(0, index[keep], torch.ones_like(value[keep]))

    def compute(self) -> dict:
        """``{space: {layer: {"bins": ["1", ..., "8+"], "negative": [...], "own": [...], "pixels": [...]}}}``
        (means per bin, None where a bin is empty; ``pixels``: the error pixels behind ``own``)."""
        names = [str(d) for d in range(1, self.bins)] + [f"{self.bins}+"]
        out: dict[str, dict] = {}
        for (space, layer), sums in sorted(self.sums.items()):
            curves = {target: [None if n == 0 else round(float(s / n), 6) for s, n in zip(*sums[row])]
                      for row, target in enumerate(TARGETS)}
            out.setdefault(space, {})[str(layer)] = {"bins": names, **curves,
                                                     "pixels": [int(n) for n in sums[1, 1]]}
        return out
