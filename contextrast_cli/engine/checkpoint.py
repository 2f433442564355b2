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


def init_from(model: nn.Module, criterion: nn.Module | None, payload: dict, cfg: Config,
              source: Path) -> list[str]:
    """Load a checkpoint's network (and projection heads when the methods match) into a new run's.

    The new run keeps its own normalisation; when the class count differs, the per-class
    tensors (the classifiers) keep their fresh initialisation.

    Returns:
        One line per thing the user should know (re-initialised classifier, fresh heads).

    Raises:
        CheckpointError: the checkpoint holds another network.
    """
    own = model.state_dict()
    state = {k: v for k, v in payload["model"].items() if k not in NORMALIZATION_KEYS}
    classes = (len(payload["dataset"]["classes"]), model.num_classes)
    differ = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    reset = [k for k in differ if (state[k].shape[:1], own[k].shape[:1]) == ((classes[0],), (classes[1],))
             and state[k].shape[1:] == own[k].shape[1:]]  # per-class tensors: the classifiers
    foreign = sorted(set(state) ^ (set(own) - set(NORMALIZATION_KEYS))) + sorted(set(differ) - set(reset))
    trained = payload["config"]["model"]
    if foreign:
        raise CheckpointError(f"--init-from {source}: it holds a {trained['name']} / {trained['backbone']} network, "
                              f"this run builds {cfg.model.name} / {cfg.model.backbone} (e.g. {foreign[0]!r} "
                              f"differs); use a checkpoint of the same network")
    model.load_state_dict({k: v for k, v in state.items() if k not in reset}, strict=False)
    notes = []
    if reset:
        notes.append(f"--init-from: {classes[0]} classes in {source.name}, {classes[1]} here: "
                     f"re-initialised {', '.join(reset)}")
    if criterion is not None:
        method = payload["config"]["contrast"]["method"]
        heads, saved = criterion.heads.state_dict(), payload.get("contrast") or {}
        if method == cfg.contrast.method and {k: v.shape for k, v in saved.items()} == \
                {k: v.shape for k, v in heads.items()}:
            criterion.heads.load_state_dict(saved)
        else:
            notes.append(f"--init-from: projection heads start fresh ({source.name} was trained with "
                         f"contrast.method {method} and other heads)")
    return notes


def check_same_run(payload: dict, cfg: Config) -> None:
    """CheckpointError unless ``cfg`` trains the network and contrastive method of ``payload``
    (a resume continues a run; ``--init-from`` starts a different one)."""
    trained = payload["config"]
    if trained["contrast"]["method"] != cfg.contrast.method:
        raise CheckpointError(f"the checkpoint was trained with contrast.method {trained['contrast']['method']!r}; "
                              f"resume with the same method (start a new run with --init-from to change it)")
    wanted = cfg.model.model_dump(mode="json")
    changed = [key for key in NETWORK_FIELDS if trained["model"][key] != wanted[key]]
    if changed:
        was, now = trained["model"], wanted
        raise CheckpointError(f"--resume: the checkpoint holds a {was['name']} / {was['backbone']} network but the "
                              f"config asks for {now['name']} / {now['backbone']} (model.{changed[0]} differs); "
                              f"resume without changing the network (drop --preset/--config), or start a new "
                              f"run from its weights with --init-from")
