"""Self-describing checkpoints: written atomically, loaded with weights_only=True."""

from pathlib import Path

import torch

from contextrast_cli import __version__
from contextrast_cli.atomic import atomic_write
from contextrast_cli.config import Config
from contextrast_cli.errors import CheckpointError, first_line

FORMAT = "contextrast-checkpoint"
FORMAT_VERSION = 1


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
    """``torch.save`` to a temporary file, then rename into place."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict:
    """Load a contextrast checkpoint on the CPU without executing any code.

    Raises:
        CheckpointError: missing file, unreadable file, or not a contextrast checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = first_line(exc, 160)
        raise CheckpointError(f"{path} is not a loadable checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a contextrast checkpoint (no '{FORMAT}' marker); "
                              f"pass a last.pt or best.pt written by `contextrast train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer contextrast (format "
                              f"{payload['format_version']}); upgrade contextrast")
    return payload


def newest_checkpoint(runs_dir: Path, filename: str = "best.pt") -> Path:
    """The most recently written ``filename`` under ``runs_dir``.

    Raises:
        CheckpointError: none found (says which folder was searched).
    """
    found = sorted(Path(runs_dir).glob(f"**/{filename}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CheckpointError(f"no {filename} found under {runs_dir}/; train first "
                              f"(contextrast train --preset toy) or pass --checkpoint PATH")
    return found[-1]


def config_from_checkpoint(payload: dict) -> Config:
    """The resolved config stored in a checkpoint."""
    return Config.model_validate(payload["config"])


def model_from_checkpoint(payload: dict) -> torch.nn.Module:
    """Rebuild the inference network from a checkpoint alone (no downloads), in eval mode."""
    from contextrast_cli.models.registry import build_model

    cfg = config_from_checkpoint(payload)
    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})
    model = build_model(model_cfg, len(payload["dataset"]["classes"]))
    model.load_state_dict(payload["model"])
    return model.eval()
