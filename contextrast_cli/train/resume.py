"""Continuing a run and starting one from another's weights: the checks that a checkpoint
belongs to the run being resumed, the payload to resume from (with the newest intact
checkpoint offered when one is damaged), ``--init-from``'s partial loading, and ``plan_start``:
how a ``train`` command begins (a new run, a resumed one, one from another's weights)."""

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from contextrast_cli.config import Config, ModelConfig
from contextrast_cli.contrast.criterion import transferable_state
from contextrast_cli.errors import CheckpointError, ConfigError
from contextrast_cli.models.checkpoint import NETWORK_FIELDS, NORMALIZATION_KEYS, load_checkpoint
from contextrast_cli.models.pretrained import check_available, initial_weights
from contextrast_cli.train.runs import checkpoint_path, interval_checkpoints


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
        fitting = transferable_state(criterion, payload.get("contrast") or {})
        if method == cfg.contrast.method and fitting is not None:
            criterion.load_state_dict(fitting, strict=False)  # heads and fusion modules; the bank starts empty
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


def load_resumable(path: Path) -> tuple[dict, Path]:
    """The payload to resume from and its run folder (``path``: a run folder, ``last.pt`` or ``iter_<N>.pt``).

    Raises:
        CheckpointError: a weights-only checkpoint (names the ``last.pt`` to use), or a truncated or
            corrupt one (names the newest intact checkpoint and the exact command); nothing is deleted.
    """
    file, _ = checkpoint_path(path, resume=True)
    run_dir = file.parent
    if not file.exists():
        raise CheckpointError(f"nothing to resume: {file} does not exist; pass a run folder or its last.pt")
    try:
        payload = load_checkpoint(file)
    except CheckpointError as exc:
        if "not a loadable checkpoint" not in str(exc):
            raise
        raise CheckpointError(f"{file} is truncated or corrupt ({str(exc).split('(', 1)[-1].rstrip(')')}); "
                              f"nothing was deleted; {_intact_offer(run_dir, exclude=file)}") from None
    if "optimizer" not in payload:
        last = run_dir / "last.pt"
        raise CheckpointError(f"{file} holds the network's weights only (no optimizer, schedule or RNG state) and "
                              f"cannot resume a run; resume with: contextrast train --resume {last} (or start a "
                              f"new run from these weights: contextrast train --init-from {file} --preset ...)")
    return payload, run_dir


def _intact_offer(run_dir: Path, exclude: Path) -> str:
    """'resume from the newest intact checkpoint with: ...', or what to do when there is none."""
    candidates = [run_dir / "last.pt", *reversed(interval_checkpoints(run_dir))]
    for candidate in candidates:
        if candidate == exclude or not candidate.is_file():
            continue
        try:
            payload = load_checkpoint(candidate)
        except CheckpointError:
            continue
        if "optimizer" in payload:
            return (f"the newest intact checkpoint is {candidate.name} (iteration {payload['iteration']}); "
                    f"resume with: contextrast train --resume {candidate}")
    best = run_dir / "best.pt"
    fresh = f" or start a new run from its best weights: contextrast train --init-from {best}" if best.is_file() else ""
    return f"no intact resumable checkpoint is left in {run_dir}; start the run again{fresh}"


def best_miou_on_disk(run_dir: Path, best: float | None) -> float | None:
    """The higher of ``best`` and the mIoU of the run's ``best.pt``: a resume from an older
    checkpoint must not replace a better ``best.pt`` written after it."""
    path = run_dir / "best.pt"
    if not path.is_file():
        return best
    try:
        saved = load_checkpoint(path).get("best_miou")
    except CheckpointError:  # an unreadable best.pt is replaced by the next validation
        return best
    return saved if best is None or (saved is not None and saved > best) else best


@dataclass(frozen=True)
class Start:
    """How a ``train`` command starts: the resolved config, and what it continues or starts from.

    Attributes:
        resume: the ``last.pt`` payload to continue (with ``run_dir``), or None.
        init: (checkpoint payload, its path) whose weights start a new run, or None.
    """

    cfg: Config
    resume: dict | None = None
    run_dir: Path | None = None
    init: tuple[dict, Path] | None = None


def plan_start(preset: str | None, config_file: Path | None, overrides: list[str], flags: dict,
               resume: Path | None = None, init_from: Path | None = None, data_root: Path | None = None) -> Start:
    """The config and starting point of ``contextrast train``: a resumed run keeps its own config
    (laid under the overrides), ``--init-from`` without a preset takes the checkpoint's.

    Raises:
        ConfigError: both ``resume`` and ``init_from``, a bad config, or ImageNet weights that are
            neither cached nor downloadable. CheckpointError: an unusable
            checkpoint. DataError: an explicit ``data_root`` without a prepared dataset.
    """
    from contextrast_cli.config import resolve_config
    from contextrast_cli.data.locate import locate_dataset

    if resume and init_from:
        raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
    payload, run_dir = load_resumable(resume) if resume else (None, None)
    init = None
    if init_from:
        source, _ = checkpoint_path(init_from)
        init = (load_checkpoint(source), source)
    base = payload["config"] if payload else None
    if init and preset is None and config_file is None:
        base = init[0]["config"]
    cfg = resolve_config(preset, config_file, overrides, flags, base=base)
    start_weights(cfg.model, payload, init)  # missing ImageNet weights stop the run here, before the data
    if data_root is not None:  # an explicit --data-root must hold a prepared dataset
        locate_dataset(cfg.data, data_root)
    return Start(cfg, payload, run_dir, init)


def start_weights(model: ModelConfig, resume: dict | None, init: tuple[dict, Path] | None) -> str:
    """Where the run's network starts from (``pretrained.initial_weights``; a resumed run keeps
    its checkpoint's record, ``--init-from`` names its file); ImageNet weights are fetched or found
    in the cache now.

    Raises:
        ConfigError: ImageNet weights neither cached nor downloadable.
    """
    if resume is not None:
        return resume.get("initial_weights", "unrecorded")
    if init is not None:
        return f"checkpoint:{Path(init[1]).resolve()}"
    if model.pretrained and model.weights is None:
        check_available(model.backbone)
    return initial_weights(model.backbone, model.pretrained, model.weights)
