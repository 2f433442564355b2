"""The contrastive losses over the used layers: named, already-weighted terms plus diagnostics."""

import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.config import ContrastConfig
from contextrast_cli.contrast.ccl import class_means, contextual_anchors, pixel_anchor_loss
from contextrast_cli.contrast.fused import GradLink
from contextrast_cli.contrast.heads import deferred_sink
from contextrast_cli.contrast.pixel_contrast import pixel_contrast_loss
from contextrast_cli.contrast.sampling import sample_positives, select_negatives
from contextrast_cli.data.specs import IGNORE_INDEX


def resize_labels(labels: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour resize of (B, H, W) ids to (B, h, w)."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def predict_at(logits: torch.Tensor, size) -> torch.Tensor:
    """The prediction resized (nearest) to ``size``: argmax of the logits sampled at the
    nearest positions, equal to resizing the full-size argmax at a fraction of the cost."""
    return F.interpolate(logits.detach(), size=tuple(size), mode="nearest").argmax(1)


def contrast_losses(features: list[torch.Tensor], logits: torch.Tensor, target: torch.Tensor,
                    projectors: nn.ModuleList, cfg: ContrastConfig) -> dict[str, torch.Tensor]:
    """The terms of ``cfg.method`` (contextrast or pixel-contrast); see those functions."""
    if cfg.method == "pixel-contrast":
        return pixel_contrast_losses(features, logits, target, projectors, cfg)
    return contextrast_losses(features, logits, target, projectors, cfg)


def pixel_contrast_losses(features: list[torch.Tensor], logits: torch.Tensor, target: torch.Tensor,
                          projectors: nn.ModuleList, cfg: ContrastConfig) -> dict[str, torch.Tensor]:
    """alpha * the Wang et al. baseline on the last entry of ``cfg.layers``, as ``loss_pc``,
    plus ``pc_pairs`` (qualifying image-class pairs) and ``pc_views`` (pixels per pair)."""
    (layer,) = cfg.used_layers
    emb = projectors[0](features[layer - 1])
    labels = resize_labels(target, emb.shape[-2:])
    pred = predict_at(logits, emb.shape[-2:])
    with torch.autocast(emb.device.type, enabled=False):  # the loss runs in float32
        out = pixel_contrast_loss(emb.float(), labels, pred, logits.shape[1], cfg.tau, cfg.pixel_contrast,
                                  IGNORE_INDEX)
    return {"loss_pc": cfg.alpha * out["loss"], "pc_pairs": out["pairs"], "pc_views": out["views"]}


def contextrast_losses(features: list[torch.Tensor], logits: torch.Tensor, target: torch.Tensor,
                       projectors: nn.ModuleList, cfg: ContrastConfig) -> dict[str, torch.Tensor]:
    """alpha * lambda_i * L_i for every used layer, as ``loss_ccl_l{i}``, plus diagnostics.

    Args:
        features: the segmentor's tapped maps [F_1 .. F_I].
        logits: (B, K, H, W) current prediction logits (detached for BANE).
        target: (B, H, W) ground truth, 255 ignored.
        projectors: one head per entry of ``cfg.layers``.

    Returns:
        ``loss_ccl_l{i}`` terms and ``ccl_*`` diagnostics (classes present, BANE and top-up
        negatives per layer, mean anchor-positive / anchor-negative similarity).
    """
    num_classes = logits.shape[1]
    flats, labels, means, counts, links = [], [], [], [], []
    for layer, head in zip(cfg.layers, projectors):
        emb = head(features[layer - 1])  # (B, D, h, w)
        labels.append(resize_labels(target, emb.shape[-2:]))  # (B, h, w)
        with torch.autocast(emb.device.type, enabled=False):  # the loss runs in float32 (float64 stays)
            flats.append(emb.flatten(2))  # (B, D, h*w), a view in the head's dtype: upcast inside
            # a head's deferred output takes its gradient as factors: no dense write in the loss's backward
            links.append(GradLink(deferred_sink(head, emb)))
            mean, count = class_means(flats[-1], labels[-1].flatten(1), num_classes, links[-1])
        means.append(mean)
        counts.append(count)
    terms: dict[str, torch.Tensor] = {}
    with torch.autocast(logits.device.type, enabled=False):
        anchors = contextual_anchors(means, counts, *cfg.anchor_weights, stop_grad=cfg.anchor_stop_grad)
        for index, layer in enumerate(cfg.layers):
            terms.update(_layer_terms(layer, flats[index], labels[index], logits, anchors[index], counts[index],
                                      cfg.lambdas[index], num_classes, cfg, links[index]))
    return terms


def _layer_terms(layer, flat, labels, logits, anchor, counts, weight, num_classes, cfg, link) -> dict:
    pos_index, pos_valid = sample_positives(labels.reshape(-1), num_classes, cfg.max_positives)
    negatives = select_negatives(predict_at(logits, labels.shape[-2:]), labels, num_classes, cfg.max_negatives,
                                 cfg.bane.ratio if cfg.bane.enabled else None, IGNORE_INDEX)
    neg_valid, is_bane = negatives.valid, negatives.is_bane
    out = pixel_anchor_loss(anchor, flat, pos_index, pos_valid, negatives.index, neg_valid, cfg.tau, link)
    present = (counts > 0).sum().float()
    bane = is_bane.sum().float()
    return {f"loss_ccl_l{layer}": cfg.alpha * weight * out["loss"],
            f"ccl_l{layer}_classes": present,
            f"ccl_l{layer}_bane": bane / present.clamp_min(1),
            f"ccl_l{layer}_topup": (neg_valid.sum() - bane) / present.clamp_min(1),
            f"ccl_l{layer}_pos_sim": out["pos_sim"],
            f"ccl_l{layer}_neg_sim": out["neg_sim"]}
