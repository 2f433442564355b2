"""Config -> contrastive loss: the one place the ``contrast`` section becomes keyword arguments."""

from collections.abc import Sequence

from torch import nn

from contextrast_cli.config import ContrastConfig
from contextrast_cli.contrast.loss import ContextrastLoss, PixelContrastLoss
from contextrast_cli.errors import ConfigError


def build_criterion(cfg: ContrastConfig, in_channels: Sequence[int], num_classes: int) -> nn.Module | None:
    """The training-only loss of ``cfg.method`` over a network of ``num_classes`` classes tapping
    ``in_channels`` (None for ``none``: cross-entropy only): the public loss objects of
    ``contextrast_cli.api``, built from the config.

    Raises:
        ConfigError: a layer the network does not tap.
    """
    if cfg.method == "none":
        return None
    if max(cfg.layers) > len(in_channels):
        raise ConfigError(f"contrast.layers: {list(cfg.layers)} but the network taps only "
                          f"{len(in_channels)} layers (1..{len(in_channels)})")
    heads = dict(embed_dim=cfg.embed_dim, hidden_cap=cfg.hidden_cap, alpha=cfg.alpha, tau=cfg.tau,
                 deferred_heads=cfg.deferred_heads)
    if cfg.method == "pixel-contrast":
        pc = cfg.pixel_contrast
        return PixelContrastLoss(num_classes, in_channels, layer=cfg.layers[-1], base_tau=pc.base_tau,
                                 max_samples=pc.max_samples, max_views=pc.max_views, **heads)
    return ContextrastLoss(
        num_classes, in_channels, layers=cfg.layers, lambdas=cfg.lambdas, anchor_weights=cfg.anchor_weights,
        anchor_stop_grad=cfg.anchor_stop_grad, max_positives=cfg.max_positives, max_negatives=cfg.max_negatives,
        max_anchors=cfg.max_anchors, sync_anchors=cfg.sync_anchors,
        bane_ratio=cfg.bane.ratio if cfg.bane.enabled else None, **heads)
