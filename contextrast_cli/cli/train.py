"""``contextrast train``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.app import (BatchSizeOpt, ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt, app,
                                     err, guarded, out, renamed)

RunsDirOpt = Annotated[Optional[Path], typer.Option("--runs-dir", metavar="DIR", help="Folder of run folders: the "
                                                    "run goes to DIR/PRESET/TIME/.", show_default="train.output_dir: "
                                                    "runs")]
IterationsOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Optimizer steps (train.iterations); with "
                                                      "--resume, a finished run trains on to N.",
                                                      show_default="the config's")]
ResumeOpt = Annotated[Optional[Path], typer.Option(metavar="PATH", help="Continue a run: its folder (its last.pt), or "
                                                   "a last.pt / iter_000500.pt file.")]
InitFromOpt = Annotated[Optional[Path], typer.Option(
    "--init-from", metavar="PATH", help="Start a new run (new schedule, new folder) from this checkpoint's network "
    "weights (a run folder: its best.pt); the config defaults to the checkpoint's.")]
OldOutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", hidden=True)]


@app.command()
def train(ctx: typer.Context, preset: PresetOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
          data_root: DataRootOpt = None, runs_dir: RunsDirOpt = None, device: DeviceOpt = None,
          iterations: IterationsOpt = None, batch_size: BatchSizeOpt = None, resume: ResumeOpt = None,
          init_from: InitFromOpt = None, debug: DebugOpt = False, output_dir: OldOutputDirOpt = None) -> None:
    """Train a segmentation network; writes RUNS_DIR/PRESET/TIME/ with checkpoints and metrics.

    Ctrl-C or SIGTERM stops after the step in progress and saves last.pt (exit 130 / 143);
    `--resume RUN` continues exactly where it stopped. A diverged loss exits with 3. Validation scores are
    printed in percent (metrics.jsonl and validation.json hold fractions); the end says how much disk the
    run folder takes.

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
        _print_result(result)


def _print_result(result) -> None:
    """``done`` (or, for a finished run resumed, how to train it longer), the best score in percent
    and the run folder with the disk it takes."""
    from contextrast_cli.train.reporting import percent
    from contextrast_cli.train.runs import disk_usage

    size = f"{disk_usage(result.run_dir) / 1e6:,.0f} MB"
    if result.complete:
        out.print(f"[bold]already complete[/]: {result.run_dir} has trained all its {result.iterations} iterations; "
                  f"nothing to do. To train it longer: contextrast train --resume {result.run_dir} --iterations N "
                  f"(N > {result.iterations}; the learning-rate schedule then runs to N)", soft_wrap=True)
        return
    out.print(f"[bold green]done[/]: {result.iterations} iterations, best val mIoU {percent(result.best_miou)}; "
              f"run folder {result.run_dir} ({size})", soft_wrap=True)
