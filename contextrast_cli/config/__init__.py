"""Configuration: the validated schema (``schema``), raw sources with provenance (``sources``),
preset discovery + resolution (``resolve``), and the catalogue of datasets the tool knows
(``datasets``, ``classes``: names, classes, palettes, the prepared layout's ignore value), and the
base-size rule (``base_size``).
Import the schema from here. No torch.

May import: errors only.
"""

from contextrast_cli.config.base_size import BaseSize
from contextrast_cli.config.contrast import AAConfig, BaneConfig, ContrastConfig, PixelContrastConfig
from contextrast_cli.config.resolve import (list_presets, preset_path, presets_dir, resolve_config, eval_settings, with_eval,
                                           with_overrides)
from contextrast_cli.config.schema import (
    IMAGENET_MEAN, IMAGENET_STD, ColorJitter, Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, SyntheticData,
    TrainConfig)

__all__ = ["AAConfig", "IMAGENET_MEAN", "IMAGENET_STD", "BaneConfig", "BaseSize", "ColorJitter", "Config", "ContrastConfig",
           "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "PixelContrastConfig", "SyntheticData", "TrainConfig",
           "list_presets", "preset_path", "presets_dir", "resolve_config", "eval_settings", "with_eval", "with_overrides"]
