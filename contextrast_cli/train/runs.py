"""Run folders: ``<runs dir>/<preset>/<timestamp>/`` with config.yaml, metrics.jsonl and checkpoints.

A run folder holds ``last.pt`` (everything needed to resume), ``best.pt`` (the network of the
best validation, weights only) and the newest ``train.keep_checkpoints`` interval checkpoints
``iter_<N>.pt`` (resumable, like ``last.pt``; the newest is a hard link to ``last.pt`` while they
hold the same iteration, so it takes no second copy on disk). Wherever a command expects a checkpoint, a run
folder stands for ``best.pt`` (``last.pt`` when there is no ``best.pt`` yet), and for
``last.pt`` when resuming.
"""

import os
import re
import time
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.config import Config
from contextrast_cli.errors import CheckpointError

INTERVAL = re.compile(r"iter_(\d+)\.pt")
ABLATION_PLAN = "plan.json"
"""Written by ``experiments.ablation`` into an ablation's folder, beside its run folders."""


def new_run_dir(cfg: Config) -> Path:
    """Create a fresh, uniquely named run folder and write the resolved config into it."""
    base = Path(cfg.train.output_dir) / cfg.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, suffix = base / stamp, 1
    while run_dir.exists():
        suffix += 1
        run_dir = base / f"{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    write_config(run_dir, cfg)
    return run_dir


def write_config(run_dir: Path, cfg: Config) -> None:
    """(Re)write the run's resolved ``config.yaml``."""
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())


def checkpoint_path(path: Path, *, resume: bool = False) -> tuple[Path, str | None]:
    """The checkpoint a path given by the user means, and a note when it is not the obvious one.

    A file is itself. A run folder means ``last.pt`` with ``resume``, else ``best.pt``, or
    ``last.pt`` (with a note) when no validation has written ``best.pt`` yet.
    """
    path = Path(path)
    if not path.is_dir():
        return path, None
    if resume:
        return path / "last.pt", None
    if (path / "best.pt").is_file() or not (path / "last.pt").is_file():
        return path / "best.pt", None
    return path / "last.pt", f"{path} has no best.pt yet (no validation has run); using its last.pt"


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


def describe_checkpoint(path: Path) -> str:
    """Where a checkpoint in a run folder comes from, for a note: ``run toy/20260101-1200,
    iteration 7``, or ``an ablation run, iteration 7`` (its run folder sits in an ablation's
    folder, beside ``ABLATION_PLAN``). The iteration is ``?`` when the file cannot be read."""
    import torch

    path = Path(path)
    try:  # mmap: the tensors are not read
        iteration = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("iteration", "?")
    except Exception:  # the command's own load says what is wrong with it
        iteration = "?"
    ablation = (path.parent.parent / ABLATION_PLAN).is_file()
    run = "an ablation run" if ablation else f"run {path.parent.parent.name}/{path.parent.name}"
    return f"{run}, iteration {iteration}"


def interval_name(iteration: int) -> str:
    """File name of the interval checkpoint of ``iteration``."""
    return f"iter_{iteration:06d}.pt"


def interval_checkpoints(run_dir: Path) -> list[Path]:
    """The run's interval checkpoints, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("iter_*.pt") if (m := INTERVAL.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def prune_intervals(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` interval checkpoints."""
    found = interval_checkpoints(run_dir)
    for path in found[:max(len(found) - keep, 0)]:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left behind."""
    stale = list(Path(run_dir).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def link_or_copy(source: Path, target: Path) -> str:
    """``target`` as the same file as ``source`` (a hard link: no second copy on disk), or a copy
    where the file system refuses links; through a temporary name either way. ``last.pt`` is
    always replaced by a rename, never rewritten in place, so a linked ``iter_<N>.pt`` keeps its
    bytes when ``last.pt`` moves on.

    Returns:
        ``"link"`` or ``"copy"``.
    """
    import shutil

    tmp = target.with_name(f".{target.name}.{os.getpid()}.copy.tmp")
    try:
        try:
            os.link(source, tmp)
            how = "link"
        except OSError:  # no hard links here (some network and FAT file systems): a copy of its own
            shutil.copyfile(source, tmp)
            how = "copy"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def disk_usage(folder: Path) -> int:
    """Bytes the files under ``folder`` take, a file with several names (hard links) counted once."""
    seen, total = set(), 0
    for path in Path(folder).rglob("*"):
        stat = path.lstat()
        if path.is_file() and not path.is_symlink() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total
