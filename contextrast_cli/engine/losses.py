"""Losses as pure functions returning named terms; the loop sums and logs them."""

import torch
import torch.nn.functional as F

from contextrast_cli.data.specs import IGNORE_INDEX


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean pixel cross-entropy over non-ignored pixels, in float32.

    Args:
        logits: (B, K, H, W).
        target: (B, H, W) int64 train ids, ``ignore_index`` ignored.

    Returns:
        A scalar; 0 (with a gradient path) when every pixel is ignored.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return total / count


def segmentation_losses(outputs: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """The supervised terms of a segmentor's outputs: ``{"loss_ce": ...}``.

    A segmentor with an auxiliary head (OCRNet, training mode) also returns
    ``"aux"`` logits and their weight ``"aux_weight"`` (paper: 0.4); this adds
    ``loss_aux = aux_weight * CE(aux)``.
    """
    terms = {"loss_ce": cross_entropy(outputs["out"], target)}
    if "aux" in outputs:
        terms["loss_aux"] = outputs["aux_weight"] * cross_entropy(outputs["aux"], target)
    return terms


def sum_losses(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the ``loss_*`` entries of a loss's terms (the rest are diagnostics, detached)."""
    losses = [value for key, value in terms.items() if key.startswith("loss_")]
    if not losses:
        raise ValueError(f"no loss_* entry among the terms ({', '.join(terms) or 'none'})")
    return sum(losses[1:], losses[0])
