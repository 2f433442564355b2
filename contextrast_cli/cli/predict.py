"""``contextrast predict``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from contextrast_cli.cli.app import (CheckpointOpt, DebugOpt, DeviceOpt, RunsDirOpt, app, err, guarded, out,
                                     pick_checkpoint, progress)
from contextrast_cli.cli.evaluate import CropOpt, FlipOpt, ModeOpt, ScalesOpt, StrideOpt, eval_overrides


@app.command()
def predict(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Images, videos (.mp4, .avi, .mov, .mkv) or folders of them.",
                                                 show_default=False)],
    checkpoint: CheckpointOpt = None,
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="An exported FILE.onnx (with its FILE.onnx.json), "
                                                 "run with onnxruntime on the CPU, instead of a checkpoint.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("predictions"),
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write the colours blended over each image "
                                          "(DIR/overlay/).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Video frames (and images of one size) "
                                            "per inference call; the labels do not depend on it.")] = 8,
    scales: ScalesOpt = None,
    flip: FlipOpt = None,
    mode: ModeOpt = None,
    crop: CropOpt = None,
    stride: StrideOpt = None,
    device: DeviceOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    debug: DebugOpt = False,
) -> None:
    """Segment your own images and videos: DIR/labels/<image>.png (train ids), DIR/colour/<image>.png
    (the palette), DIR/overlay/ with --overlay, and DIR/<video>_overlay.mp4 per video.

    Folders are searched recursively and outputs mirror the paths inside them (photos/a/x.png ->
    DIR/labels/a/x.png); inputs sharing a stem in one folder keep their extension (x.png.png,
    x.jpg.png); inputs whose outputs would still collide are refused before anything is written.
    The same inference as `evaluate` (the checkpoint's eval.* settings unless overridden). A video
    whose frame rate is missing or unusable is written at 25 fps, with a note. An unreadable input
    is reported and skipped; the exit code is 1 if any failed.
    """
    from contextrast_cli.evaluation.predict import collect_inputs, load_predictor, predict_files
    from contextrast_cli.errors import ConfigError

    with guarded(ctx, debug):
        if onnx is not None and checkpoint is not None:
            raise ConfigError("pass either --checkpoint or --onnx, not both")
        overrides = {k: v for k, v in eval_overrides(scales, flip, mode, crop, stride, False).items()
                     if k != "boundary"}
        files = collect_inputs(inputs, out_dir)
        source = None if onnx is not None else pick_checkpoint(checkpoint, runs_dir)
        if onnx is not None and device is not None:
            err.print("[yellow]note:[/] --device applies to checkpoints; an ONNX graph runs with onnxruntime on the CPU")
        predictor = load_predictor(source, onnx, device or "auto", overrides)
        with progress() as bar:
            task = bar.add_task("predicting", total=len(files))
            report = predict_files(predictor, files, out_dir, overlay, batch_size,
                                   on_item=lambda _: bar.advance(task))
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    for path, why in report.failed:
        err.print(f"[yellow]skipped[/] {escape(why)}")
    frames = f", {report.frames} video frames" if report.frames else ""
    out.print(f"[bold green]wrote[/] {len(report.written)} files for {report.images} images{frames} to "
              f"{escape(str(out_dir))}" + (f"; {len(report.failed)} input(s) failed" if report.failed else ""))
    if report.failed:
        raise typer.Exit(1)
