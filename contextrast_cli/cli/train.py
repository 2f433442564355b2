"""``contextrast train``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.app import (ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt, app, err,
                                     guarded, out, renamed)


@app.command()
def train(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_root: DataRootOpt = None,
    runs_dir: Annotated[Optional[Path], typer.Option(
        "--runs-dir", help="Folder of run folders (default runs/; train.output_dir).")] = None,
    device: DeviceOpt = None,
    iterations: Annotated[Optional[int], typer.Option(help="Override train.iterations.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override train.batch_size.")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue a run: its folder (its last.pt), or a last.pt / iter_<N>.pt file.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        "--init-from", help="Start a new run (new schedule, new folder) from this checkpoint's network "
        "weights (a run folder: its best.pt); the config defaults to the checkpoint's.")] = None,
    debug: DebugOpt = False,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", hidden=True)] = None,
) -> None:
    """Train a segmentation network; writes <runs-dir>/<preset>/<time>/ with checkpoints and metrics.

    Ctrl-C or SIGTERM stops after the step in progress and saves last.pt (exit 130 / 143);
    `--resume RUN` continues exactly where it stopped. A diverged loss exits with 3.

    Several GPUs or nodes: start it with torchrun (`torchrun --nproc-per-node G -m contextrast_cli
    train ...`) or SLURM's srun; train.batch_size is the global batch, and a run resumes on any
    process count that divides it.
    """
    from contextrast_cli.config import resolve_config
    from contextrast_cli.data.build import locate_dataset
    from contextrast_cli.engine.checkpoint import load_checkpoint
    from contextrast_cli.engine.device import shutdown_runtime
    from contextrast_cli.engine.reporting import RichReporter
    from contextrast_cli.engine.runs import checkpoint_path, load_resumable
    from contextrast_cli.engine.trainer import Trainer
    from contextrast_cli.errors import ConfigError

    with guarded(ctx, debug):
        runs_dir = renamed(runs_dir, output_dir, "--output-dir", "--runs-dir")
        flags = {"data.root": str(data_root.resolve()) if data_root else None,
                 "train.output_dir": str(runs_dir) if runs_dir else None, "train.device": device,
                 "train.iterations": iterations, "train.batch_size": batch_size}
        if resume and init_from:
            raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
        payload, run_dir = load_resumable(resume) if resume else (None, None)
        init = None
        if init_from:
            source, _ = checkpoint_path(init_from)
            init = (load_checkpoint(source), source)
        base = payload["config"] if payload else None
        if init and preset is None and config is None:
            base = init[0]["config"]
        cfg = resolve_config(preset, config, overrides or [], flags, base=base)
        if data_root is not None:  # an explicit --data-root must hold a prepared dataset
            locate_dataset(cfg.data, data_root)
        trainer = Trainer(cfg, resume=payload, run_dir=run_dir, init=init, reporter=RichReporter(err))
        try:
            result = trainer.run()
        finally:
            shutdown_runtime(trainer.runtime)
    if not trainer.runtime.is_main:
        return
    best = f"{result.best_miou:.4f}" if result.best_miou is not None else "n/a"
    out.print(f"[bold green]done[/]: {result.iterations} iterations, best val mIoU {best}; "
              f"checkpoints in {result.run_dir}")
