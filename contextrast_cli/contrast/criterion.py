"""Config -> contrastive loss: the one place the ``contrast`` section becomes keyword arguments."""

from collections.abc import Sequence

import torch
from torch import nn

from contextrast_cli.config import ContrastConfig
from contextrast_cli.contrast.loss import ContextrastLoss, PixelContrastLoss
from contextrast_cli.errors import ConfigError


def build_criterion(cfg: ContrastConfig, in_channels: Sequence[int], num_classes: int) -> nn.Module | None:
    """The training-only loss of ``cfg.method`` over a network of ``num_classes`` classes tapping
    ``in_channels`` (None for ``none``: cross-entropy only): the public loss objects of
    ``contextrast_cli.api``, built from the config (Contextrast++ is ``ContextrastLoss`` with its
    fusion and AA settings).

    Raises:
        ConfigError: a layer the network does not tap.
    """
    if cfg.method == "none":
        return None
    cfg = cfg.resolved()  # the method's defaults (lambdas, fusion, aa.enabled)
    if max(cfg.layers) > len(in_channels):
        raise ConfigError(f"contrast.layers: {list(cfg.layers)} but the network taps only "
                          f"{len(in_channels)} layers (1..{len(in_channels)})")
    heads = dict(embed_dim=cfg.embed_dim, hidden_cap=cfg.hidden_cap, alpha=cfg.alpha, tau=cfg.tau,
                 deferred_heads=cfg.deferred_heads)
    if cfg.method == "pixel-contrast":
        pc = cfg.pixel_contrast
        return PixelContrastLoss(num_classes, in_channels, layer=cfg.layers[-1], base_tau=pc.base_tau,
                                 max_samples=pc.max_samples, max_views=pc.max_views, **heads)
    aa = cfg.aa
    return ContextrastLoss(
        num_classes, in_channels, layers=cfg.layers, lambdas=cfg.lambdas, anchor_weights=cfg.anchor_weights,
        anchor_stop_grad=cfg.anchor_stop_grad, max_positives=cfg.max_positives, max_negatives=cfg.max_negatives,
        max_anchors=cfg.max_anchors, sync_anchors=cfg.sync_anchors,
        bane_ratio=cfg.bane.ratio if cfg.bane.enabled else None, fusion=cfg.fusion,
        fusion_mlp_layers=cfg.fusion_mlp_layers, aa=bool(aa.enabled), bank_size=aa.bank_size,
        aa_selection=aa.selection, aa_balanced=aa.balanced, aa_read_before_push=aa.read_before_push,
        implementation=cfg.implementation, **heads)


def load_contrast_state(criterion: nn.Module, saved: dict) -> None:
    """Restore a loss's training state from a checkpoint's ``"contrast"`` entry: its
    ``state_dict()`` (projection heads, Contextrast++'s fusion modules and memory bank), or, from
    checkpoints before Contextrast++, the projection heads' state alone."""
    if any(key.startswith("heads.") for key in saved):
        criterion.load_state_dict(saved)
    else:
        criterion.heads.load_state_dict(saved)


def transferable_state(criterion: nn.Module, saved: dict) -> dict | None:
    """The parameters of another run's loss that fit this one (heads and fusion modules, every
    shape equal; never the memory bank, which a new run starts empty), or None when they do not."""
    if not any(key.startswith("heads.") for key in saved):
        saved = {f"heads.{key}": value for key, value in saved.items()}
    ours = {k: v for k, v in criterion.state_dict().items() if isinstance(v, torch.Tensor)}
    theirs = {k: v for k, v in saved.items() if isinstance(v, torch.Tensor)}
    if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in ours.items()}:
        return None
    return theirs
