"""Contextual contrastive learning: class-mean anchors, the cross-layer update and the
pixel-anchor InfoNCE of METHOD.md section 2, computed only where it is read. Pure functions,
float32 at least (float64 stays), plain autograd.

Costs per layer with P pixels, K classes, D channels: the class sums and their gradient are
O(P x D) (the method: every labelled pixel moves its class's anchor); everything else is over
the sampled pixels: each positive and each BANE pick is a dot with its one anchor, and the
shared top-up pool is one (K, L) product. No (K, P) or (B, K, N) tensor exists.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F

from contextrast_cli.contrast.bane import count_ids
from contextrast_cli.contrast.rows import row_cosines, sampled_layer
from contextrast_cli.contrast.sampling import NegativeSelection, Positives

NEG_FILL = -1e4  # log-sum of an anchor without negatives: exp(-1e4) ~ 0, gradients stay finite


def class_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int,
                group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding per class over all labelled pixels of the batch.

    Args:
        emb: (B, D, N) embeddings, channels first (a feature map flattened: no copy); summed in
            float32 at least (a bfloat16 map is upcast, float64 stays).
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
    return torch.where((flat >= 0) & (flat < num_classes), flat, num_classes)


def means_of(sums: torch.Tensor, counts: torch.Tensor, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means from class sums (K, D) and counts (K,), both over the global batch with ``group``."""
    if group is not None:  # counts ride along as one more column (exact in float32 below 2**24)
        both = global_sum(torch.cat([sums, counts[:, None].to(sums.dtype)], 1), group)
        sums, counts = both[:, :-1], both[:, -1].round().long()
    return sums / counts.clamp_min(1)[:, None].to(sums.dtype), counts


def process_group():
    """The default process group when ``torch.distributed`` runs several processes, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


def global_sum(tensor: torch.Tensor, group) -> torch.Tensor:
    """``tensor`` summed over the processes of ``group``, differentiably: the backward sums the
    gradients of every process's loss (each process's loss reads the same global sum)."""
    return _GlobalSum.apply(tensor, group)


class _GlobalSum(torch.autograd.Function):
    """``dist.all_reduce`` with its adjoint (an all-reduce of the gradient). What
    ``torch.distributed.nn.functional.all_reduce`` does, which torch 2.14 deprecates in favour
    of a private module."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def contextual_anchors(means: list[torch.Tensor], counts: list[torch.Tensor], w_low: float, w_high: float,
                       stop_grad: bool = False) -> list[torch.Tensor]:
    """Cross-layer anchor update, then L2 normalisation.

    For layer i < I and a class present at both i and I: w_low * a_i + w_high * a_I;
    otherwise a_i. The deepest layer keeps its own anchors.

    Args:
        means: per layer (K, D) class means, shallow to deep.
        counts: per layer (K,) pixel counts.
        stop_grad: detach a_I inside the shallower layers' anchors.
    """
    deep, deep_present = means[-1], counts[-1] > 0
    deep_term = deep.detach() if stop_grad else deep
    anchors = []
    for index, (mean, count) in enumerate(zip(means, counts)):
        if index < len(means) - 1:
            both = ((count > 0) & deep_present)[:, None]
            mean = torch.where(both, w_low * mean + w_high * deep_term, mean)
        anchors.append(F.normalize(mean, dim=1))
    return anchors


def pixel_anchor_loss(anchors: torch.Tensor, emb: torch.Tensor, positives: Positives,
                      negatives: NegativeSelection, tau: float) -> dict[str, torch.Tensor]:
    """L_i of METHOD.md: mean over the classes with positives of the mean positive InfoNCE term

        -log( e^{a.v+/tau} / (e^{a.v+/tau} + sum_{v-} e^{a.v-/tau}) ) = softplus(LSE(neg) - a.v+/tau),

    with each anchor's negatives its BANE picks plus its top-up from the pool.

    Args:
        anchors: (K, D) unit anchors.
        emb: (B, D, N) unit embeddings of the layer, channels first (bfloat16 is upcast).

    Returns:
        ``loss`` (scalar; 0 when no class has a positive), ``pos_sim`` and ``neg_sim`` (mean
        cosine similarity of the positives and negatives used, detached).
    """
    batch, dim, pixels = emb.shape
    rows = emb.permute(0, 2, 1).reshape(batch * pixels, dim).index_select(0, sample_index(positives, negatives))
    return sampled_loss(anchors, rows, positives, negatives, tau)


def sample_index(positives: Positives, negatives: NegativeSelection) -> torch.Tensor:
    """The pixels ``sampled_loss`` reads, in its order: positives, BANE picks, the pool."""
    return torch.cat([positives.index, negatives.bane.index, negatives.pool])


def sampled_loss(anchors: torch.Tensor, rows: torch.Tensor, positives: Positives, negatives: NegativeSelection,
                 tau: float) -> dict[str, torch.Tensor]:
    """``pixel_anchor_loss`` from the embeddings of ``sample_index``'s pixels as rows (M, D)."""
    dtype = torch.promote_types(rows.dtype, torch.float32)
    anchors, bane = anchors.to(dtype), negatives.bane
    # a positive is a dot with its own anchor, a BANE pick one with the anchor it is a negative of
    pair_cos, pool_cos = row_cosines(anchors, rows.to(dtype), torch.cat([positives.anchor, bane.anchor]))
    pos_cos, bane_cos = pair_cos.split((positives.index.numel(), bane.index.numel()))  # (Mp,), (Mb,); pool (K, L)
    neg_lse = _negative_lse(bane_cos / tau, bane, pool_cos / tau, negatives.topup)  # (K,)
    per_pos = F.softplus(neg_lse[positives.anchor] - pos_cos / tau) * positives.valid
    n_pos = positives.counts.to(dtype)
    per_class = torch.zeros_like(n_pos).index_add(0, positives.anchor, per_pos) / n_pos.clamp_min(1)
    present = n_pos > 0
    loss = (per_class * present).sum() / present.sum().clamp_min(1)
    negs = bane.valid.sum() + negatives.topup.sum()
    neg_sum = (bane_cos.detach() * bane.valid).sum() + (pool_cos.detach() * negatives.topup).sum()
    return {"loss": loss, "pos_sim": (pos_cos.detach() * positives.valid).sum() / positives.valid.sum().clamp_min(1),
            "neg_sim": neg_sum / negs.clamp_min(1)}


def _negative_lse(bane_logits: torch.Tensor, bane, pool_logits: torch.Tensor, topup: torch.Tensor) -> torch.Tensor:
    """Per anchor, log sum exp over its negatives: a segment sum over its BANE picks plus a masked
    sum over the pool; NEG_FILL for an anchor with none."""
    pool_logits = torch.where(topup, pool_logits, NEG_FILL)  # masked before any exp: no inf * 0
    bane_logits = torch.where(bane.valid, bane_logits, NEG_FILL)
    with torch.no_grad():  # a constant per anchor (any constant gives exact gradients): the largest logit
        shift = pool_logits.amax(1).scatter_reduce(0, bane.anchor, bane_logits, "amax")
    total = torch.exp(pool_logits - shift[:, None]).mul(topup).sum(1)
    total = total.index_add(0, bane.anchor, torch.exp(bane_logits - shift[bane.anchor]) * bane.valid)
    return torch.where(total > 0, shift + torch.log(total.clamp_min(1e-30)), torch.full_like(total, NEG_FILL))
