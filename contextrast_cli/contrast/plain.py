"""Contextrast and Contextrast++ in plain form: METHOD.md equation by equation, plain autograd,
Python loops over layers and classes, from given samples. Open this module first.

``contrast.loss.ContextrastLoss`` computes the same numbers fast (one custom kernel per step,
no loop over classes); its tests prove it equal to this module in float64, values and
gradients, on the same samples. With ``contrast.implementation: plain`` the trainer runs this
module itself (with ``contrast.plain_sampling``), slowly. Prototype new parts here first.

Notation (METHOD.md): layer i of I tapped layers, class n, embeddings v (unit rows), anchors a
(class means), fused anchors â (unit), temperature tau.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from contextrast_cli.contrast.reduce import global_sum


@dataclass
class LayerSamples:
    """One layer's samples, per class n (K entries each): the pixels of V+_n (``positives``) and
    of V-_n (``negatives``: BANE's picks, then the random top-up), as indices into the layer's
    flattened (B, h, w) pixels."""

    positives: list[torch.Tensor]
    negatives: list[torch.Tensor]


@dataclass
class BankDraw:
    """The memory-bank entries one step reads (section 6.2): ``entries`` (K, K_M, D) and ``valid``
    (K, K_M) bool, per class the entries it contributes: K_M of them, drawn with replacement while
    its queue holds fewer (``contrast.aa.balanced``), or its queue as it is."""

    entries: torch.Tensor
    valid: torch.Tensor

    @property
    def available(self) -> torch.Tensor:
        """(K,) bool: the classes whose queue holds any entry."""
        return self.valid.any(1)


def rows_of(emb: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B*h*w, D): pixel p = (b, y, x) in raster order, one row each."""
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])


def class_means(rows: torch.Tensor, labels: torch.Tensor, num_classes: int, group=None):
    """Eq. 2.3: a^n = mean of the embeddings labelled n (ignored pixels take no part), over the
    global batch with ``group`` (sums and counts all-reduced, differentiably). Returns the means
    (K, D) (zero for absent classes) and the counts (K,)."""
    sums = torch.stack([rows[labels == n].sum(0) for n in range(num_classes)])
    counts = torch.stack([(labels == n).sum() for n in range(num_classes)]).to(rows.dtype)
    if group is not None:
        sums, counts = global_sum(sums, group), global_sum(counts, group)
    return sums / counts.clamp_min(1)[:, None], counts.round().long()


def static_update(low: torch.Tensor, high: torch.Tensor, w_low: float, w_high: float) -> torch.Tensor:
    """Eq. 2.4: â_i = w_l a_i + w_h a_I."""
    return w_low * low + w_high * high


def channel_attention(a: torch.Tensor, attention) -> torch.Tensor:
    """F(a) = softmax(q k^T / sqrt(d)) v with q, k, v = W_q a, W_k a, W_v a: a (d x d) attention
    between the channels of one vector (section 6.1, our reading). ``a`` (d,)."""
    q, k, v = (layer(a) for layer in (attention.query, attention.key, attention.value))
    weights = torch.softmax(torch.outer(q, k) / math.sqrt(a.numel()), dim=1)  # (d, d)
    return weights @ v


def adaptive_update(low: torch.Tensor, high: torch.Tensor, fusion) -> torch.Tensor:
    """Section 6.1: â_i = MLP(F_h(a_I) ⊕ F_l(a_i)), for one class's (d,) anchors."""
    return fusion.mlp(torch.cat([channel_attention(high, fusion.high), channel_attention(low, fusion.low)]))


def contextual_anchors(means: list[torch.Tensor], counts: list[torch.Tensor], *, w_low: float, w_high: float,
                       stop_grad: bool = False, fusions: list | None = None) -> list[torch.Tensor]:
    """Eq. 2.4 (or 6.1 with ``fusions``) then unit length: for a layer i < I and a class present at
    both i and I, the updated anchor; otherwise a_i. Returns per layer (K, D) unit anchors."""
    deepest = len(means) - 1
    out = []
    for i, (layer_means, layer_counts) in enumerate(zip(means, counts)):
        row = []
        for n, a in enumerate(layer_means):
            if i < deepest and layer_counts[n] > 0 and counts[deepest][n] > 0:
                high = means[deepest][n].detach() if stop_grad else means[deepest][n]
                a = adaptive_update(a, high, fusions[i]) if fusions else static_update(a, high, w_low, w_high)
            row.append(F.normalize(a, dim=0))
        out.append(torch.stack(row))
    return out


def info_nce(anchor: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """-(1/|V+|) sum_{v+} log( e^{â.v+/tau} / (e^{â.v+/tau} + sum_{v-} e^{â.v-/tau}) ), written as
    log-sum-exp minus the positive's logit so that it holds at any tau > 0."""
    pos = positives @ anchor / tau  # (n+,)
    neg = negatives @ anchor / tau  # (n-,)
    terms = [torch.logsumexp(torch.cat([p[None], neg]), 0) - p for p in pos]
    return torch.stack(terms).mean()


def layer_loss(anchors: torch.Tensor, rows: torch.Tensor, samples: LayerSamples, tau: float) -> torch.Tensor:
    """Eq. 2.5: L_i = mean over the classes with positives of their InfoNCE term (0 if none)."""
    terms = [info_nce(anchors[n], rows[pos], rows[neg], tau)
             for n, (pos, neg) in enumerate(zip(samples.positives, samples.negatives)) if pos.numel() > 0]
    return torch.stack(terms).mean() if terms else rows.sum() * 0


def representatives(anchors: list[torch.Tensor], counts: list[torch.Tensor], selection: str):
    """Section 6.2: the anchor S(c) each class contributes to the bank, and the classes N* that
    contribute. prioritized: N* = the classes present at the shallowest layer, S(c) = â at the
    deepest layer where c is present; earliest: â at the shallowest layer; deepest: N* = the
    classes present at the deepest layer, â there; average: the unit mean of â over the layers
    where c is present. Returns S (K, D) and chosen (K,) bool."""
    present = torch.stack([c > 0 for c in counts])  # (I, K)
    chosen = present[-1] if selection == "deepest" else present[0]
    rows = []
    for n in range(present.shape[1]):
        layers = [i for i in range(len(anchors)) if present[i, n]] or [0]
        if selection == "prioritized":
            rows.append(anchors[layers[-1]][n])
        elif selection == "earliest":
            rows.append(anchors[0][n])
        elif selection == "deepest":
            rows.append(anchors[-1][n])
        else:  # average
            rows.append(F.normalize(torch.stack([anchors[i][n] for i in layers]).mean(0), dim=0))
    return torch.stack(rows), chosen


def anchor_to_anchor_loss(S: torch.Tensor, chosen: torch.Tensor, bank: BankDraw, tau: float) -> torch.Tensor:
    """Section 6.2: L_AA = mean over the chosen classes c with a non-empty queue of
    -(1/K_M) sum_{ã+} log( e^{ã^c.ã+/tau} / (e^{ã^c.ã+/tau} + sum_{ã-} e^{ã^c.ã-/tau}) ): ã+ the
    entries class c contributes, ã- those of every other class (0 if no class qualifies)."""
    terms = []
    for c in range(S.shape[0]):
        if not (chosen[c] and bank.available[c]):
            continue
        others = [bank.entries[o][bank.valid[o]] for o in range(S.shape[0]) if o != c]
        terms.append(info_nce(S[c], bank.entries[c][bank.valid[c]], torch.cat(others), tau))
    return torch.stack(terms).mean() if terms else S.sum() * 0


def contextrast_losses(embs: list[torch.Tensor], labels: list[torch.Tensor], samples: list[LayerSamples],
                       num_classes: int, *, tau: float, w_low: float, w_high: float, stop_grad: bool = False,
                       fusions: list | None = None, group=None):
    """The unweighted L_i of every layer, and the anchors and counts behind them.

    Args:
        embs: per layer (B, D, h, w) unit embeddings; labels: per layer (B, h, w) ground truth at
            the layer (ids outside 0..K-1 ignored); samples: per layer, as drawn.
        fusions: Contextrast++'s fusion modules (section 6.1), or None for the static update.
        group: a process group: the anchors over the global batch.

    Returns:
        [L_i], per layer the (K, D) unit anchors, and per layer the (K,) global counts.
    """
    rows = [rows_of(emb) for emb in embs]
    stats = [class_means(r, lab.reshape(-1), num_classes, group) for r, lab in zip(rows, labels)]
    counts = [c for _, c in stats]
    anchors = contextual_anchors([m for m, _ in stats], counts, w_low=w_low, w_high=w_high, stop_grad=stop_grad,
                                 fusions=fusions)
    return [layer_loss(a, r, s, tau) for a, r, s in zip(anchors, rows, samples)], anchors, counts
