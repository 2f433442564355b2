"""Self-describing checkpoints: written atomically, loaded with weights_only=True.

Format 2 (this version) keeps the input normalisation in the network's state dict
(``pixel_mean`` / ``pixel_std``); format 1 files are upgraded when loaded.
"""

import errno
from pathlib import Path

import torch
from torch import nn

from contextrast_cli import __version__
from contextrast_cli.atomic import atomic_write
from contextrast_cli.config import Config
from contextrast_cli.errors import CheckpointError, first_line

FORMAT = "contextrast-checkpoint"
NETWORK_FIELDS = ("name", "backbone", "output_stride", "options")
FORMAT_VERSION = 2
NORMALIZATION_KEYS = ("pixel_mean", "pixel_std")


def describe(cfg: Config, dataset) -> dict:
    """The metadata every checkpoint carries (config, classes, palette, normalisation)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "contextrast_version": __version__,
        "config": cfg.to_dict(),
        "dataset": {"name": dataset.name, "classes": list(dataset.classes),
                    "palette": [list(c) for c in dataset.palette],
                    "ignore_index": dataset.ignore_index},
        "normalization": {"mean": list(cfg.data.mean), "std": list(cfg.data.std)},
    }


def save_checkpoint(path: Path, payload: dict) -> Path:
    """``torch.save`` to a temporary file, then rename into place: the previous file survives
    any failure.

    Raises:
        CheckpointError: the file could not be written (a full disk, permissions).
    """
    try:
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        kept = f"the previous {Path(path).name} is intact" if Path(path).exists() else "nothing was written"
        raise CheckpointError(f"could not write checkpoint {path}: {why}; {kept}; free space or fix the "
                              f"folder, then resume with: contextrast train --resume {Path(path).parent}") from None


def load_checkpoint(path: Path) -> dict:
    """Load a contextrast checkpoint file on the CPU without executing any code (format 1 upgraded).

    Raises:
        CheckpointError: missing file, unreadable file, or not a contextrast checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.is_dir() else
                              f"{path} is a folder; pass a checkpoint file (or a run folder where the command "
                              f"takes one)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a loadable checkpoint ({first_line(exc, 160)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a contextrast checkpoint (no '{FORMAT}' marker); "
                              f"pass a last.pt or best.pt written by `contextrast train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer contextrast (format "
                              f"{payload['format_version']}); upgrade contextrast")
    return upgrade(payload)


def upgrade(payload: dict) -> dict:
    """A format-1 payload in format 2: normalisation into the network's state dict, and no
    ``model.output_stride`` for networks with fixed strides (format 1 stored the default 8)."""
    if payload.get("format_version", 1) >= 2:
        return payload
    from contextrast_cli.models.registry import accepts

    norm = payload["normalization"]
    for key, values in zip(NORMALIZATION_KEYS, (norm["mean"], norm["std"])):
        payload["model"][key] = torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)
    model = payload["config"]["model"]
    if not accepts(model["name"], "output_stride"):
        model["output_stride"] = None
    payload["format_version"] = 2
    return payload


def config_from_checkpoint(payload: dict) -> Config:
    """The resolved config stored in a checkpoint."""
    return Config.model_validate(payload["config"])


def network_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """The checkpoint's network, freshly initialised, built without downloads."""
    from contextrast_cli.models.registry import build_model

    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})
    return build_model(model_cfg, num_classes, cfg.data.mean, cfg.data.std)


def model_from_checkpoint(payload: dict) -> nn.Module:
    """Rebuild the inference network from a checkpoint alone (no downloads), in eval mode."""
    model = network_from_config(config_from_checkpoint(payload), len(payload["dataset"]["classes"]))
    model.load_state_dict(payload["model"])
    return model.eval()
