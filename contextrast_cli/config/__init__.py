"""Configuration: the validated schema (``schema``), raw sources with provenance (``sources``)
and preset discovery + resolution (``resolve``). Import from here."""

from contextrast_cli.config.resolve import list_presets, preset_path, presets_dir, resolve_config, eval_settings, with_eval
from contextrast_cli.config.schema import (
    IMAGENET_MEAN, IMAGENET_STD, BaneConfig, ColorJitter, Config, ContrastConfig, DataConfig, EvalConfig,
    ModelConfig, OptimConfig, PixelContrastConfig, SyntheticData, TrainConfig)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BaneConfig", "ColorJitter", "Config", "ContrastConfig", "DataConfig",
           "EvalConfig", "ModelConfig", "OptimConfig", "PixelContrastConfig", "SyntheticData", "TrainConfig",
           "list_presets", "preset_path", "presets_dir", "resolve_config", "eval_settings", "with_eval"]
