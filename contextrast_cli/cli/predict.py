"""``contextrast predict``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from contextrast_cli.cli.app import (AmpOpt, CheckpointOpt, DebugOpt, DeviceOpt, RunsDirOpt, SetOpt, app, checked_sets,
                                     err, existing, guarded, note_replaced, out, out_option, pick_checkpoint, plural,
                                     progress)
from contextrast_cli.cli.evaluate import CropOpt, FlipOpt, ModeOpt, ScalesOpt, StrideOpt, eval_overrides
from contextrast_cli.cli.options import EVAL_KEYS

InputsArg = Annotated[list[Path], typer.Argument(metavar="INPUTS...", show_default=False,
                                                 help="Images, videos (.mp4, .avi, .mov, .mkv) or folders of them.")]
OnnxOpt = Annotated[Optional[Path], typer.Option("--onnx", metavar="FILE", help="An exported FILE.onnx (with its "
                                                 "FILE.onnx.json), run with onnxruntime on the CPU, instead of a "
                                                 "checkpoint.")]
OverlayOpt = Annotated[bool, typer.Option("--overlay", help="Also write the colours blended over each image "
                                          "(OUT/overlay/).")]
NoFramesOpt = Annotated[bool, typer.Option("--no-label-frames", help="For videos, write the overlay video only, "
                                           "not each frame's label PNG.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Video frames (and images of one "
                                       "size) per inference call; the labels do not depend on it.")]


@app.command()
def predict(ctx: typer.Context, inputs: InputsArg, checkpoint: CheckpointOpt = None, onnx: OnnxOpt = None,
            out_dir: out_option("Output folder.") = Path("predictions"), overlay: OverlayOpt = False,
            no_label_frames: NoFramesOpt = False, overrides: SetOpt = None, batch_size: BatchOpt = 8,
            scales: ScalesOpt = None, flip: FlipOpt = None, mode: ModeOpt = None, crop: CropOpt = None,
            stride: StrideOpt = None, device: DeviceOpt = None, amp: AmpOpt = False,
            runs_dir: RunsDirOpt = Path("runs"), debug: DebugOpt = False) -> None:
    """Segment your own images and videos: OUT/labels/IMAGE.png (train ids), OUT/colour/IMAGE.png
    (the palette), OUT/overlay/ with --overlay; per video OUT/VIDEO_overlay.mp4 and each frame's
    labels in OUT/labels/VIDEO_frames/000000.png ...

    Folders are searched recursively and outputs mirror the paths inside them (photos/a/x.png ->
    OUT/labels/a/x.png); inputs sharing a stem in one folder keep their extension (x.png.png,
    x.jpg.png); inputs whose outputs would still collide are refused before anything is written.
    The same inference as `evaluate` (the checkpoint's eval.* settings unless overridden by the
    options or --set eval.KEY=VALUE). A video whose frame rate is missing or unusable is written at
    25 fps, with a note. An unreadable input is reported and skipped; the exit code is 1 if any
    failed. Existing outputs are replaced, with a note.
    """
    from contextrast_cli.evaluation.predict import collect_inputs, load_predictor, predict_files
    from contextrast_cli.errors import ConfigError

    with guarded(ctx, debug):
        if onnx is not None and checkpoint is not None:
            raise ConfigError("pass either --checkpoint or --onnx, not both")
        overrides_ = {k: v for k, v in eval_overrides(scales, flip, mode, crop, stride, False).items()
                      if k != "boundary"}
        settings = checked_sets(overrides, EVAL_KEYS, "predict")
        files = collect_inputs(inputs, out_dir)
        source = None if onnx is not None else pick_checkpoint(checkpoint, runs_dir)
        if onnx is not None and (device is not None or amp):
            err.print("[yellow]note:[/] --device and --amp apply to checkpoints; an ONNX graph runs with "
                      "onnxruntime on the CPU")
        predictor = load_predictor(source, onnx, device or "auto", overrides_, settings, amp)
        before = existing(*(out_dir / sub for sub in ("labels", "colour", "overlay")),
                          *(out_dir / item.output for item in files if item.is_video))
        with progress() as bar:
            task = bar.add_task("predicting", total=len(files))
            report = predict_files(predictor, files, out_dir, overlay, batch_size,
                                   on_item=lambda _: bar.advance(task), label_frames=not no_label_frames)
    _print_report(report, out_dir, overlay)
    note_replaced(before)
    if report.failed:
        raise typer.Exit(1)


def _print_report(report, out_dir: Path, overlay: bool) -> None:
    """Notes, skipped inputs, and one line counting what was written, by kind."""
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    for _, why in report.failed:
        err.print(f"[yellow]skipped[/] {escape(why)}")
    kinds = []
    if report.images:
        each = "label, colour and overlay PNGs" if overlay else "label and colour PNGs"
        kinds.append(f"{plural(report.images, 'image')} ({each}{' each' if report.images > 1 else ''})")
    if report.videos:
        videos = "an overlay video" if report.videos == 1 else plural(report.videos, "overlay video")
        frames = f" and {plural(report.label_frames, 'label frame')}" if report.label_frames else ""
        kinds.append(f"{plural(report.videos, 'video')} of {plural(report.frames, 'frame')} ({videos}{frames})")
    failed = f"; {plural(len(report.failed), 'input')} failed" if report.failed else ""
    out.print(f"[bold green]wrote[/] {plural(len(report.written), 'file')} to {escape(str(out_dir))}"
              + (f": {', '.join(kinds)}" if kinds else "") + failed, soft_wrap=True)
