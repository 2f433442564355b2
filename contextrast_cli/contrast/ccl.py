"""Contextual contrastive learning: class-mean anchors, the cross-layer update and
the pixel-anchor InfoNCE of METHOD.md section 2. Pure functions, float32."""

import torch
import torch.distributed as dist
import torch.nn.functional as F

from contextrast_cli.contrast.fused import AnchorSimilarity, ClassSums, GradLink, class_sums
from contextrast_cli.contrast.sampling import count_ids

NEG_FILL = -1e4  # logit of a padded negative: contributes exp(-1e4) ~ 0, keeps gradients finite


def class_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int, link: GradLink | None = None,
                group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding per class over all labelled pixels of the batch.

    Args:
        emb: (B, D, N) embeddings, channels first (a feature map flattened: no copy); summed in
            float32 at least (a bfloat16 map is upcast, float64 stays).
        labels: (B, N) class ids; values outside [0, K) (ignore) take no part.
        link: shared with the layer's ``pixel_anchor_loss`` to write dL/demb in one pass
            (see ``contrast.fused``); None = plain autograd.
        group: a process group: sums and counts are summed over its processes (one
            differentiable all-reduce), so the means are those of the global batch and each
            process's embeddings get their share of every process's gradient. None: this
            process's batch alone.

    Returns:
        means (K, D) (zero rows for absent classes) and counts (K,) int64.
    """
    bins = torch.where((labels >= 0) & (labels < num_classes), labels, num_classes)  # (B, N), K = ignored
    dtype = torch.promote_types(emb.dtype, torch.float32)
    if link is None:
        sums = class_sums(emb, bins, num_classes, dtype)  # (K, D): a scatter-add, autograd's gather backward
    else:
        sums = ClassSums.apply(emb, bins, num_classes, dtype, link)
    counts = count_ids(bins, num_classes + 1)[:num_classes]
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


def pixel_anchor_loss(anchors: torch.Tensor, emb: torch.Tensor, pos_index: torch.Tensor, pos_valid: torch.Tensor,
                      neg_index: torch.Tensor, neg_valid: torch.Tensor, tau: float,
                      link: GradLink | None = None) -> dict[str, torch.Tensor]:
    """L_i of METHOD.md: mean over present classes of the mean positive InfoNCE term.

    -log( e^{a.v+/tau} / (e^{a.v+/tau} + sum_{v-} e^{a.v-/tau}) ) = softplus(LSE(neg) - pos).

    Args:
        anchors: (K, D) unit anchors.
        emb: (B, D, N) unit embeddings of the layer, channels first (bfloat16 is upcast).
        pos_index, pos_valid: (K, Mp) positives per anchor, indices into the B*N pixels.
        neg_index, neg_valid: (K, Mn) negatives per anchor.
        link: the layer's link from ``class_means`` (one fused gradient pass), or None.

    Returns:
        ``loss`` (scalar; 0 when no class has a positive), ``pos_sim`` and ``neg_sim``
        (mean cosine similarity of the anchors of classes present, detached).
    """
    dtype = torch.promote_types(emb.dtype, torch.float32)  # float32 under autocast, float64 stays
    anchors = anchors.to(dtype)
    # one matmul (B, K, N), then cheap gathers: no (K, M, D) copies, no (B*N, D) transpose
    if link is None:
        sim = torch.bmm(anchors.expand(emb.shape[0], *anchors.shape), emb.to(dtype))  # (B, K, N)
    else:
        sim = AnchorSimilarity.apply(anchors, emb, link)
    sim = sim.transpose(0, 1).reshape(anchors.shape[0], -1)  # (K, B*N), small
    pos_cos, neg_cos = sim.gather(1, pos_index), sim.gather(1, neg_index)
    neg_lse = torch.where(neg_valid, neg_cos / tau, torch.full_like(neg_cos, NEG_FILL)).logsumexp(1)
    per_pos = F.softplus(neg_lse[:, None] - pos_cos / tau) * pos_valid
    n_pos = pos_valid.sum(1)
    present = n_pos > 0
    per_class = per_pos.sum(1) / n_pos.clamp_min(1)
    loss = (per_class * present).sum() / present.sum().clamp_min(1)
    return {"loss": loss,
            "pos_sim": _masked_mean(pos_cos.detach(), pos_valid),
            "neg_sim": _masked_mean(neg_cos.detach(), neg_valid & present[:, None])}


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)
