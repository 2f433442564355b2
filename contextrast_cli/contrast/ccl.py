"""Contextual contrastive learning: class-mean anchors, the cross-layer update and the
pixel-anchor InfoNCE of METHOD.md section 2, computed only where it is read. Pure functions,
float32 at least (float64 stays), plain autograd.

Costs per layer with P pixels, K classes, D channels: the class sums and their gradient are
O(P x D) (the method: every labelled pixel moves its class's anchor); everything else is over
the sampled pixels: each positive and each BANE pick is a dot with its one anchor, and the
shared top-up pool is one (K, L) product. No (K, P) or (B, K, N) tensor exists.
"""

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from contextrast_cli.contrast.bane import BanePicks, count_ids
from contextrast_cli.contrast.consts import fill
from contextrast_cli.contrast.reduce import global_sum
from contextrast_cli.contrast.rows import RowGrads, row_cosines, sampled_layer
from contextrast_cli.contrast.samples import NegativeSelection, Positives


def class_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int,
                group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding per class over all labelled pixels of the batch.

    Args:
        emb: (B, D, N) embeddings (a feature map flattened: no copy); summed in float32 at least
            (a bfloat16 map is upcast, float64 stays).
        labels: (B, N) class ids; values outside [0, K) (ignore) take no part.
        group: a process group: sums and counts are summed over its processes (one
            differentiable all-reduce), so the means are those of the global batch and each
            process's embeddings get their share of every process's gradient. None: this
            process's batch alone.

    Returns:
        means (K, D) (zero rows for absent classes) and counts (K,) int64.
    """
    bins = pixel_bins(labels, num_classes)
    sums, _ = sampled_layer(emb, bins, bins.new_zeros(0), num_classes)
    counts = count_ids(bins, num_classes + 1)[:num_classes]
    return means_of(sums, counts, group)


def pixel_bins(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(P,) each pixel's class, ``num_classes`` for ignored ones (labels (B, N) flattened)."""
    flat = labels.reshape(-1)
    return torch.where((flat >= 0) & (flat < num_classes), flat, fill(flat, num_classes))


def means_of(sums: torch.Tensor, counts: torch.Tensor, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means from class sums (..., K, D) and counts (..., K), both over the global batch with
    ``group`` (one all-reduce, whatever the leading dimensions: all layers at once)."""
    if group is not None:  # counts ride along as one more column (exact in float32 below 2**24)
        both = global_sum(torch.cat([sums, counts[..., None].to(sums.dtype)], -1), group)
        sums, counts = both[..., :-1], both[..., -1].round().long()
    return sums / counts.clamp_min(1)[..., None].to(sums.dtype), counts


def contextual_anchors(means: list[torch.Tensor], counts: list[torch.Tensor], w_low: float, w_high: float,
                       stop_grad: bool = False) -> list[torch.Tensor]:
    """``stacked_anchors`` of per-layer lists: (K, D) means and (K,) counts, shallow to deep."""
    return list(stacked_anchors(torch.stack(means), torch.stack(counts), w_low, w_high, stop_grad).unbind())


def stacked_anchors(means: torch.Tensor, counts: torch.Tensor, w_low: float, w_high: float,
                    stop_grad: bool = False) -> torch.Tensor:
    """Cross-layer anchor update, then L2 normalisation, every layer at once.

    For layer i < I and a class present at both i and I: w_low * a_i + w_high * a_I;
    otherwise a_i. The deepest layer keeps its own anchors.

    Args:
        means: (I, K, D) class means, shallow to deep.
        counts: (I, K) pixel counts.
        stop_grad: detach a_I inside the shallower layers' anchors.

    Returns:
        (I, K, D) unit anchors.
    """
    deep = means[-1].detach() if stop_grad else means[-1]
    both = (counts > 0) & (counts[-1] > 0) & _shallow(means.shape[0], str(means.device))
    return F.normalize(torch.where(both[..., None], w_low * means + w_high * deep, means), dim=-1)


@lru_cache(maxsize=16)
def _shallow(layers: int, device: str) -> torch.Tensor:
    """(I, 1) bool: every layer but the deepest (made once per depth and device)."""
    return (torch.arange(layers) < layers - 1)[:, None].to(device)


def pixel_anchor_loss(anchors: torch.Tensor, emb: torch.Tensor, positives: Positives,
                      negatives: NegativeSelection, tau: float) -> dict[str, torch.Tensor]:
    """L_i of METHOD.md for one layer (``sampled_loss``).

    Args:
        anchors: (K, D) unit anchors.
        emb: (B, D, N) unit embeddings of the layer (bfloat16 is upcast).

    Returns:
        ``loss`` (scalar; 0 when no class has a positive), ``pos_sim`` and ``neg_sim`` (mean
        cosine similarity of the positives and negatives used, detached).
    """
    bane, spill = negatives.bane, negatives.spill
    if spill is None:
        spill = BanePicks(bane.index[:0], bane.anchor[:0], bane.valid[:0], torch.zeros_like(bane.counts))
    index = torch.cat([positives.index, bane.index, spill.index, negatives.pool])
    rows = emb.permute(0, 2, 1).reshape(-1, emb.shape[1]).index_select(0, index)
    kind = torch.cat([torch.full_like(part.anchor, i) for i, part in enumerate((positives, bane, spill))])
    totals = torch.stack([positives.valid.sum(), bane.valid.sum(), spill.valid.sum()])[None]
    pairs = Pairs(torch.cat([positives.anchor, bane.anchor, spill.anchor]),
                  torch.cat([positives.valid, bane.valid, spill.valid]), kind == 0, kind, positives.counts, totals)
    out = sampled_loss(anchors, rows, pairs, negatives.topup[None], tau)
    return {"loss": out["loss"][0], "pos_sim": out["pos_sim"][0], "neg_sim": out["neg_sim"][0]}


@dataclass
class Pairs:
    """The sampled rows read against one anchor each (positives and BANE picks, all layers).

    Attributes:
        anchor: (M,) anchor id (layer x K + class); valid: (M,) a real sample; positive: (M,) a
        positive (else a negative read against its one anchor); group: (M,) layer x 3 + (0 a
        positive, 1 a BANE pick, 2 a top-up pixel from past the pool); pos_counts: (G,) positives
        per anchor; totals: (I, 3) the valid pairs of each kind per layer.
    """

    anchor: torch.Tensor
    valid: torch.Tensor
    positive: torch.Tensor
    group: torch.Tensor
    pos_counts: torch.Tensor
    totals: torch.Tensor


def sampled_loss(anchors: torch.Tensor, rows: torch.Tensor, pairs: Pairs, topup: torch.Tensor,
                 tau: float, link: RowGrads | None = None) -> dict[str, torch.Tensor]:
    """L_i of METHOD.md for every layer i at once: per layer, the mean over the classes with
    positives of the mean positive InfoNCE term

        -log( e^{a.v+/tau} / (e^{a.v+/tau} + sum_{v-} e^{a.v-/tau}) ) = softplus(LSE(neg) - a.v+/tau),

    each anchor's negatives its BANE picks plus its top-up (from its layer's pool, and past it).

    Args:
        anchors: (G, D) unit anchors, G = I x K.
        rows: (M + I x L, D) embeddings: the pairs' rows, then each layer's pool.
        topup: (I, K, L) bool, the pool rows each anchor takes.
        link: the ``contrast.rows.RowGrads`` that ``rows`` was made with (``sampled_layers``): their
            gradient is handed back as factors.

    Returns:
        (I,) tensors: ``loss`` (0 for a layer without positives), ``pos_sim`` and ``neg_sim`` (mean
        cosine similarity of the positives and negatives used, detached), ``bane`` and ``topup``
        (the negatives of each kind per layer).
    """
    dtype, layers = torch.promote_types(rows.dtype, torch.float32), topup.shape[0]
    pair_cos, pool_cos = row_cosines(anchors.to(dtype), rows.to(dtype), pairs.anchor, layers, link)  # (M,), (I, K, L)
    positive, negative = pairs.valid & pairs.positive, pairs.valid & ~pairs.positive
    loss = _InfoNCE.apply(pair_cos, pool_cos, pairs.anchor, positive, negative, topup, pairs.pos_counts, tau)
    with torch.no_grad():
        sums = pair_cos.new_zeros(layers * 3).index_add_(0, pairs.group, pair_cos * pairs.valid).view(layers, 3)
        numbers = pairs.totals.to(dtype)  # (I, 3): positives, BANE picks, top-up past the pool
        topups = topup.sum((1, 2)).to(dtype) + numbers[:, 2]
        neg_sim = (sums[:, 1:].sum(1) + (pool_cos * topup).sum((1, 2))) / (numbers[:, 1] + topups).clamp_min(1)
        pos_sim = sums[:, 0] / numbers[:, 0].clamp_min(1)
    return {"loss": loss, "pos_sim": pos_sim, "neg_sim": neg_sim, "bane": numbers[:, 1], "topup": topups}


class _InfoNCE(torch.autograd.Function):
    """Per layer, the mean over its classes with positives of their positives' mean
    softplus(LSE(negatives) - a.v+/tau), from the pairs' cosines (M,) and the pools' (I, K, L), with
    the gradient written in closed form (a few operators, not autograd's record of the forward):

        dL/dz_p = w_a sigmoid(z_p), z_p = LSE_a - s_p;  dL/ds_p = -dL/dz_p (a positive);
        dL/ds_j = (sum_{p of a} dL/dz_p) e^{s_j - LSE_a} (a negative j of anchor a),

    w_a = dL/dL_i / (n_a x classes with positives at layer i). Each anchor's log-sum-exp is a segment
    sum over its pair negatives plus a masked sum over its layer's pool, shifted by its largest
    logit; an anchor without negatives has LSE = -inf (its positives' terms are log 1 = 0), so the
    loss is the formula's at any tau > 0."""

    @staticmethod
    def forward(ctx, pair_cos, pool_cos, anchor, positive, negative, topup, pos_counts, tau):
        pair_logits = pair_cos / tau
        none = fill(pool_cos, float("-inf"))
        pool_logits = torch.where(topup, pool_cos / tau, none)  # masked before any exp: no inf * 0
        neg_logits = torch.where(negative, pair_logits, none)
        shift = pool_logits.amax(2).view(-1).scatter_reduce(0, anchor, neg_logits, "amax")  # (G,), -inf: none
        shift = torch.where(shift > float("-inf"), shift, fill(shift, 0.0))
        pool_exp = torch.exp(pool_logits - shift.view_as(topup[..., 0])[..., None])
        neg_exp = torch.exp(neg_logits - shift[anchor])
        total = pool_exp.sum(2).view(-1).index_add_(0, anchor, neg_exp)
        lse = torch.where(total > 0, shift + torch.log(total), none)
        margin = lse[anchor] - pair_logits
        n_pos = pos_counts.to(pair_cos.dtype)
        present = (n_pos > 0).view(topup.shape[:2])
        terms = torch.where(positive, F.softplus(margin), fill(margin, 0.0))
        per_class = torch.zeros_like(n_pos).index_add_(0, anchor, terms) / n_pos.clamp_min(1)
        classes = present.sum(1).clamp_min(1)
        ctx.save_for_backward(anchor, positive, torch.sigmoid(margin), pool_exp, neg_exp, total, n_pos, present, classes)
        ctx.tau = tau
        return (per_class.view_as(present) * present).sum(1) / classes

    @staticmethod
    def backward(ctx, grad):
        anchor, positive, sigmoid, pool_exp, neg_exp, total, n_pos, present, classes = ctx.saved_tensors
        weight = ((grad / classes)[:, None] * present).view(-1) / n_pos.clamp_min(1)  # (G,)
        d_margin = (weight[anchor] * sigmoid).mul_(positive)  # (M,)
        share = torch.zeros_like(weight).index_add_(0, anchor, d_margin) / total.clamp_min(1)  # dL/dLSE / total (0 or >= 1)
        d_pairs = (neg_exp * share[anchor] - d_margin) / ctx.tau
        d_pool = pool_exp * (share / ctx.tau).view_as(present)[..., None]
        return d_pairs, d_pool, None, None, None, None, None, None
