"""A plain float64 reference of Contextrast's loss (METHOD.md section 2) over given samples:
Python loops over classes and samples, per-class masks, no project code. Shared by the
single-process test and the 2-process one."""

import torch
import torch.nn.functional as F


def samples_of(positives, negatives) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """The loss's samples of one layer as plain lists: class -> positive pixels, anchor -> negative
    pixels (its BANE picks, its pool top-up and its top-up from past the pool)."""
    pos, neg = {}, {}
    for index, anchor, valid in zip(positives.index.tolist(), positives.anchor.tolist(), positives.valid.tolist()):
        if valid:
            pos.setdefault(anchor, []).append(index)
    bane = negatives.bane
    for index, anchor, valid in zip(bane.index.tolist(), bane.anchor.tolist(), bane.valid.tolist()):
        if valid:
            neg.setdefault(anchor, []).append(index)
    for anchor, row in enumerate(negatives.topup.tolist()):
        for j, taken in enumerate(row):
            if taken:
                neg.setdefault(anchor, []).append(int(negatives.pool[j]))
    spill = negatives.spill
    for index, anchor, valid in zip(spill.index.tolist(), spill.anchor.tolist(), spill.valid.tolist()):
        if valid:
            neg.setdefault(anchor, []).append(index)
    return pos, neg


def layer_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[list, list[int]]:
    """Per class: the mean of its pixels' embeddings (emb (P, D), labels (P,)), and its count."""
    means, counts = [], []
    for n in range(num_classes):
        mask = labels == n
        counts.append(int(mask.sum()))
        means.append(emb[mask].mean(0) if mask.any() else emb.new_zeros(emb.shape[1]))
    return means, counts


def anchors_of(means: list[list], counts: list[list[int]], w_low: float, w_high: float, stop_grad: bool) -> list:
    """The cross-layer update, class by class: w_l a_i + w_h a_I where the class is at both layers."""
    deepest = len(means) - 1
    out = []
    for layer, (layer_means_, layer_counts) in enumerate(zip(means, counts)):
        row = []
        for n, mean in enumerate(layer_means_):
            if layer < deepest and layer_counts[n] > 0 and counts[deepest][n] > 0:
                deep = means[deepest][n].detach() if stop_grad else means[deepest][n]
                mean = w_low * mean + w_high * deep
            row.append(F.normalize(mean, dim=0))
        out.append(row)
    return out


def layer_loss(anchors: list, emb: torch.Tensor, pos: dict, neg: dict, tau: float) -> torch.Tensor:
    """L_i: mean over the classes with positives of the mean of -log(e^{a.v+/t} / (e^{a.v+/t} + sum e^{a.v-/t}))."""
    terms = []
    for n, pixels in sorted(pos.items()):
        a = anchors[n]
        inner = []
        for p in pixels:
            num = torch.exp(a @ emb[p] / tau)
            den = num + sum((torch.exp(a @ emb[q] / tau) for q in neg.get(n, [])), emb.new_zeros(()))
            inner.append(-torch.log(num / den))
        terms.append(sum(inner) / len(inner))
    return sum(terms) / len(terms) if terms else emb.new_zeros(())


def flat_embeddings(emb: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B*h*w, D), pixel p = (b, y, x) in raster order per image."""
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])


def total_loss(embs: list[torch.Tensor], labels: list[torch.Tensor], samples: list, num_classes: int, *,
               alpha: float, lambdas, tau: float, w_low: float, w_high: float, stop_grad: bool,
               anchor_embs: list[torch.Tensor] | None = None, anchor_labels: list[torch.Tensor] | None = None
               ) -> torch.Tensor:
    """alpha * sum_i lambda_i * L_i over the layers: embs (B, D, h, w), labels (B, h, w), samples per
    layer as (pos, neg) dicts. The anchors come from ``anchor_embs`` / ``anchor_labels`` when given
    (the global batch of several processes), else from ``embs`` / ``labels``."""
    flats = [flat_embeddings(e) for e in embs]
    sources = zip(anchor_embs or embs, anchor_labels or labels)
    stats = [layer_means(flat_embeddings(e), lab.reshape(-1), num_classes) for e, lab in sources]
    anchors = anchors_of([s[0] for s in stats], [s[1] for s in stats], w_low, w_high, stop_grad)
    return sum(alpha * lam * layer_loss(a, f, pos, neg, tau)
               for lam, a, f, (pos, neg) in zip(lambdas, anchors, flats, samples))
