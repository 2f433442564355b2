"""The pixel-contrast baseline: Wang et al., "Exploring Cross-Image Pixel Contrast for
Semantic Segmentation" (ICCV 2021), the method Contextrast is compared against.

Per (image, class) pair with more than ``max_views`` labelled pixels (a qualifying pair),
``n_view = min(max_samples // pairs, max_views)`` pixels are sampled (with more qualifying pairs
than ``max_samples``, one view each of ``max_samples`` pairs drawn at random), half "hard"
(labelled the class, predicted otherwise) and half "easy" (predicted correctly), the
shortfall of one kind filled from the other. The sampled embeddings enter a supervised
contrastive (SupCon) loss where every sample is an anchor, positives share its class and
negatives are all samples of other classes, scaled by tau / base_tau.

Deliberate departures from the authors' code: the loss always contributes (no
``0 * loss`` path), and a batch with no qualifying pair gives a zero loss (with a
gradient path) instead of an exception. Sampling is vectorised over pixels, images and
classes; the number of qualifying pairs is the one host synchronisation (it sets shapes).
"""

import torch

from contextrast_cli.contrast.sampling import count_ids, shuffle_within_groups


def sample_views(labels: torch.Tensor, pred: torch.Tensor, num_classes: int, max_samples: int,
                 max_views: int, ignore_index: int = 255,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard/easy anchor sampling over qualifying (image, class) pairs.

    Args:
        labels: (B, h, w) ground truth at the embedding's size.
        pred: (B, h, w) detached prediction at the same size.

    Returns:
        index (A, V) into the flattened B*h*w pixels and the class of each pair (A,);
        A = 0 (and V = 0) when no pair qualifies.
    """
    batch = labels.shape[0]
    flat, flat_pred = labels.reshape(-1), pred.reshape(-1)
    image = torch.arange(batch, device=labels.device).repeat_interleave(flat.numel() // batch)
    valid = (flat >= 0) & (flat < num_classes) & (flat != ignore_index)
    pair = torch.where(valid, image * num_classes + flat, batch * num_classes)  # (P,), last bin = ignored
    counts = count_ids(pair, batch * num_classes + 1)[:-1]
    qualifying = counts > max_views
    num_pairs = int(qualifying.sum())  # the one host sync: it fixes the output shape
    if num_pairs == 0:
        return flat.new_zeros(0, 0), flat.new_zeros(0)
    if num_pairs > max_samples:  # fewer samples than pairs: one view each of max_samples random pairs
        qualifying, num_pairs = _random_pairs(qualifying, max_samples, generator), max_samples
    views = min(max_samples // num_pairs, max_views)
    hard = (flat_pred != flat) & valid
    group = pair * 2 + (~hard).long()  # per pair: the hard group, then the easy one; last pair = ignored
    order, group_counts = shuffle_within_groups(group, 2 * batch * num_classes + 2, generator)
    n_hard, n_easy = group_counts[0::2], group_counts[1::2]  # (B*K + 1,)
    keep_hard = torch.minimum(n_hard, torch.clamp(views - n_easy, min=views // 2))
    keep = torch.stack([keep_hard, views - keep_hard], 1).reshape(-1)  # per group
    eligible = torch.cat([qualifying, qualifying.new_zeros(1)])  # (B*K + 1,)
    sorted_group = group[order]
    sorted_pair = sorted_group // 2
    rank = torch.arange(order.numel(), device=flat.device) - (group_counts.cumsum(0) - group_counts)[sorted_group]
    take = eligible[sorted_pair] & (rank < keep[sorted_group])
    slot = rank + torch.where(sorted_group % 2 == 1, keep_hard[sorted_pair], 0)  # easy views after hard ones
    row = torch.where(eligible, torch.cumsum(eligible.long(), 0) - 1, num_pairs)  # pair -> output row
    # scatter every pixel, the ones not taken into a spare last row: no boolean-mask selection
    index = flat.new_zeros(num_pairs + 1, views)
    index[torch.where(take, row[sorted_pair], num_pairs), torch.where(take, slot, 0)] = order
    pair_class = flat.new_zeros(num_pairs + 1).scatter_(
        0, row[:-1], torch.arange(batch * num_classes, device=flat.device) % num_classes)
    return index[:num_pairs], pair_class[:num_pairs]


def _random_pairs(qualifying: torch.Tensor, keep: int, generator: torch.Generator | None) -> torch.Tensor:
    """``keep`` of the qualifying pairs (bool mask), drawn uniformly at random."""
    score = torch.rand(qualifying.shape, device=qualifying.device, generator=generator)
    order = torch.argsort(torch.where(qualifying, score, 2.0))  # qualifying pairs first, in random order
    chosen = torch.zeros_like(qualifying)
    chosen[order[:keep]] = True
    return chosen


def supcon_loss(samples: torch.Tensor, classes: torch.Tensor, tau: float, base_tau: float) -> torch.Tensor:
    """Supervised contrastive loss over all sampled views (every view an anchor).

    For anchor i and positive p (same class, p != i):
    log_prob = s_ip - log(exp(s_ip) + sum_{n: other class} exp(s_in)), s = cosine / tau;
    loss = -(tau / base_tau) * mean over anchors of the mean log_prob over its positives.

    Args:
        samples: (A, V, D) unit embeddings, V views of A (image, class) pairs.
        classes: (A,) class of each pair.
    """
    feats = samples.float().reshape(-1, samples.shape[-1])  # (A*V, D), pair-major
    labels = classes.repeat_interleave(samples.shape[1])
    logits = feats @ feats.T / tau
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=feats.device)
    positive = same & ~eye
    neg_lse = torch.where(same, torch.full_like(logits, float("-inf")), logits).logsumexp(1, keepdim=True)
    log_prob = logits - torch.logaddexp(logits, neg_lse)
    n_pos = positive.sum(1)
    mean_log_prob = (log_prob * positive).sum(1) / n_pos.clamp_min(1)
    has_pos = n_pos > 0
    return -(tau / base_tau) * (mean_log_prob * has_pos).sum() / has_pos.sum().clamp_min(1)


def pixel_contrast_loss(emb: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor, num_classes: int, *,
                        tau: float = 0.1, base_tau: float = 0.07, max_samples: int = 1024, max_views: int = 100,
                        ignore_index: int = 255) -> dict[str, torch.Tensor]:
    """The baseline's loss on one layer (the defaults are its paper's values).

    Args:
        emb: (B, D, h, w) unit embeddings.
        labels, pred: (B, h, w) ground truth and detached prediction at the embedding's size.
        max_samples, max_views: see ``sample_views``.

    Returns:
        ``loss`` (0 with a gradient path when no pair qualifies), ``pairs`` and ``views``.
    """
    flat = emb.flatten(2)  # (B, D, N), a view
    index, classes = sample_views(labels, pred, num_classes, max_samples, max_views, ignore_index)
    if index.numel() == 0:
        return {"loss": emb.sum() * 0.0, "pairs": emb.new_zeros(()), "views": emb.new_zeros(())}
    pixels = flat.shape[-1]
    samples = flat[index // pixels, :, index % pixels]  # (A, V, D): only the sampled pixels move
    loss = supcon_loss(samples, classes, tau, base_tau)
    return {"loss": loss, "pairs": emb.new_tensor(float(index.shape[0])),
            "views": emb.new_tensor(float(index.shape[1]))}
