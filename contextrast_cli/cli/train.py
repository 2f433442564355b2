"""``contextrast train``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.app import (ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt, app, err,
                                     guarded, out, renamed)

RunsDirOpt = Annotated[Optional[Path], typer.Option("--runs-dir", help="Folder of run folders (default runs/; "
                                                    "train.output_dir).")]
IterationsOpt = Annotated[Optional[int], typer.Option(help="Override train.iterations.")]
BatchOpt = Annotated[Optional[int], typer.Option(help="Override train.batch_size.")]
ResumeOpt = Annotated[Optional[Path], typer.Option(help="Continue a run: its folder (its last.pt), or a last.pt / "
                                                   "iter_<N>.pt file.")]
InitFromOpt = Annotated[Optional[Path], typer.Option(
    "--init-from", help="Start a new run (new schedule, new folder) from this checkpoint's network weights (a run "
    "folder: its best.pt); the config defaults to the checkpoint's.")]
OldOutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", hidden=True)]


@app.command()
def train(ctx: typer.Context, preset: PresetOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
          data_root: DataRootOpt = None, runs_dir: RunsDirOpt = None, device: DeviceOpt = None,
          iterations: IterationsOpt = None, batch_size: BatchOpt = None, resume: ResumeOpt = None,
          init_from: InitFromOpt = None, debug: DebugOpt = False, output_dir: OldOutputDirOpt = None) -> None:
    """Train a segmentation network; writes <runs-dir>/<preset>/<time>/ with checkpoints and metrics.

    Ctrl-C or SIGTERM stops after the step in progress and saves last.pt (exit 130 / 143);
    `--resume RUN` continues exactly where it stopped. A diverged loss exits with 3.

    Several GPUs or nodes: start it with torchrun (`torchrun --nproc-per-node G -m contextrast_cli
    train ...`) or SLURM's srun; train.batch_size is the global batch, and a run resumes on any
    process count that divides it.
    """
    from contextrast_cli.runtime.device import shutdown_runtime
    from contextrast_cli.train.reporting import RichReporter
    from contextrast_cli.train.resume import plan_start
    from contextrast_cli.train.trainer import Trainer

    with guarded(ctx, debug):
        runs_dir = renamed(runs_dir, output_dir, "--output-dir", "--runs-dir")
        flags = {"data.root": str(data_root.resolve()) if data_root else None,
                 "train.output_dir": str(runs_dir) if runs_dir else None, "train.device": device,
                 "train.iterations": iterations, "train.batch_size": batch_size}
        start = plan_start(preset, config, overrides or [], flags, resume, init_from, data_root)
        trainer = Trainer(start.cfg, resume=start.resume, run_dir=start.run_dir, init=start.init,
                          reporter=RichReporter(err))
        try:
            result = trainer.run()
        finally:
            shutdown_runtime(trainer.runtime)
    if trainer.runtime.is_main:
        best = f"{result.best_miou:.4f}" if result.best_miou is not None else "n/a"
        out.print(f"[bold green]done[/]: {result.iterations} iterations, best val mIoU {best}; "
                  f"checkpoints in {result.run_dir}")
