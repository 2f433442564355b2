"""The model registry and the one place config -> builder keywords happens."""

import inspect

from contextrast_cli.config import ModelConfig
from contextrast_cli.errors import ConfigError
from contextrast_cli.registry import Registry

MODELS = Registry("model", "model.name")


def load_builders() -> Registry:
    """``MODELS`` after importing every module that registers a builder."""
    from contextrast_cli.models import deeplab, hrnet, ocrnet  # noqa: F401  (register their builders)

    return MODELS


def build_model(cfg: ModelConfig, num_classes: int):
    """Build the registered segmentor named by ``cfg.name``.

    Raises:
        ConfigError: unknown name or an option the builder does not take.
    """
    builder = load_builders().get(cfg.name)
    kwargs = dict(num_classes=num_classes, backbone=cfg.backbone, output_stride=cfg.output_stride,
                  pretrained=cfg.pretrained, weights=cfg.weights, **cfg.options)
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model.options: {cfg.name} does not take {', '.join(unknown)}; "
                          f"it takes: {', '.join(k for k in accepted if k != 'num_classes')}")
    return builder(**kwargs)
