"""The model registry and the one place config -> builder keywords happens.

Builders register themselves when ``contextrast_cli.models`` is imported (its ``__init__``
imports every model module); this module never imports them back.
"""

import inspect
from collections.abc import Sequence

from contextrast_cli.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from contextrast_cli.errors import ConfigError
from contextrast_cli.registry import Registry

MODELS = Registry("model", "model.name")


def accepts(name: str, keyword: str) -> bool:
    """Whether the builder registered as ``name`` takes ``keyword``."""
    return keyword in inspect.signature(MODELS.get(name)).parameters


def builder_kwargs(cfg: ModelConfig, num_classes: int) -> dict:
    """The keyword arguments ``cfg`` gives the builder of ``cfg.name``.

    Raises:
        ConfigError: unknown name, or a setting the builder does not take.
    """
    builder = MODELS.get(cfg.name)
    kwargs = dict(num_classes=num_classes, backbone=cfg.backbone, pretrained=cfg.pretrained,
                  weights=cfg.weights, **cfg.options)
    accepted = inspect.signature(builder).parameters
    if cfg.output_stride is not None:
        if "output_stride" not in accepted:
            raise ConfigError(f"model.output_stride: {cfg.name} has fixed strides and takes no "
                              f"output_stride; remove it (--set model.output_stride=null)")
        kwargs["output_stride"] = cfg.output_stride
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model.options: {cfg.name} does not take {', '.join(unknown)}; "
                          f"it takes: {', '.join(k for k in accepted if k != 'num_classes')}")
    return kwargs


def build_model(cfg: ModelConfig, num_classes: int, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD):
    """Build the registered segmentor named by ``cfg.name``.

    Args:
        mean, std: the input normalisation (RGB in [0, 1] units, ``data.mean`` / ``data.std``),
            kept by the segmentor as its ``pixel_mean`` / ``pixel_std`` buffers.

    Raises:
        ConfigError: unknown name or a setting the builder does not take.
    """
    model = MODELS.get(cfg.name)(**builder_kwargs(cfg, num_classes))
    model.set_normalization(mean, std)
    return model
