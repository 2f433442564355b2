"""``contextrast evaluate``."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from contextrast_cli.cli.analyze import invocation
from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, DeviceOpt, RunsDirOpt, app, err, guarded,
                                     out, parse_list, parse_size, pick_checkpoint, progress)

ScalesOpt = Annotated[Optional[str], typer.Option(
    "--scales", help="Test scales, comma-separated, e.g. 0.75,1.0,1.25, relative to eval.base_size when set "
    "(default: the config's eval.scales).")]
FlipOpt = Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Also average the flipped "
                                                 "prediction (default: eval.flip).")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", metavar="whole|slide", help="whole: each image at once; slide: windows of "
                                                "--crop every --stride pixels (default: eval.mode).")]
CropOpt = Annotated[Optional[str], typer.Option("--crop", help="Sliding-window size HxW (default: the "
                                                "training crop).")]
StrideOpt = Annotated[Optional[str], typer.Option("--stride", help="Sliding-window step HxW (default: 2/3 "
                                                  "of the crop).")]
BoundaryOpt = Annotated[Optional[bool], typer.Option("--boundary/--no-boundary", help="Boundary IoU and boundary "
                                                     "F-score per class (default: eval.boundary, on unless the "
                                                     "config turned it off).")]


def eval_overrides(scales: str | None, flip: bool | None, mode: str | None, crop: str | None,
                   stride: str | None, boundary: bool | None) -> dict:
    """The ``eval.*`` settings the command-line options ask for (only those given)."""
    given = {"scales": parse_list(scales, float, "--scales") if scales else None, "flip": flip, "mode": mode,
             "crop": parse_size(crop, "--crop") if crop else None,
             "stride": parse_size(stride, "--stride") if stride else None}
    given["boundary"] = boundary
    return {k: v for k, v in given.items() if v is not None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def _base_text(base: dict | None) -> str:
    """``, base size 2048x512`` (long x short bound) or ``, base size 520 (long side)``; empty without one."""
    if not base:
        return ""
    return f", base size {base['long']}x{base['short']}" if base.get("short") else f", base size {base['long']} (long side)"


def metrics_table(metrics: dict) -> Table:
    edges = metrics.get("boundary")
    columns = ["class", "IoU", "Acc"] + (["boundary IoU", "boundary F"] if edges else [])
    table = Table(*columns, title=f"{metrics['split']} ({metrics['num_images']} images)")
    for name, iou in metrics["IoU"].items():
        extra = [_pct(edges["BIoU"][name]), _pct(edges["BF"][name])] if edges else []
        table.add_row(name, _pct(iou), _pct(metrics["Acc"][name]), *extra)
    table.add_section()
    extra = [f"[bold]{_pct(edges['mBIoU'])}", f"[bold]{_pct(edges['mBF'])}"] if edges else []
    table.add_row("[bold]mean", f"[bold]{_pct(metrics['mIoU'])}", f"[bold]{_pct(metrics['mAcc'])}", *extra)
    protocol = metrics.get("eval")
    how = (f"  scales {','.join(map(str, protocol['scales']))}{' + flip' if protocol['flip'] else ''}, "
           f"{protocol['mode']}{_base_text(protocol.get('base_size'))}" if protocol else "")
    table.caption = (f"mIoU {_pct(metrics['mIoU'])}  aAcc {_pct(metrics['aAcc'])}  mAcc {_pct(metrics['mAcc'])}"
                     + (f"  mBIoU {_pct(edges['mBIoU'])}  mBF {_pct(edges['mBF'])}" if edges else "") + how
                     + (f"  ({metrics['precision']})" if "precision" in metrics else ""))
    return table


def features_table(features: dict) -> Table:
    table = Table("space", "layer", "A (spread)", "U (separation)", "U / A", "pixels",
                  title="feature space (L2-normalised, Euclidean)")
    for space, label in (("layers", "encoder features"), ("embeddings", "projection heads")):
        for layer, v in (features.get(space) or {}).items():
            ratio = f"{v['U'] / v['A']:.3f}" if v["A"] and v["U"] is not None else "-"
            table.add_row(label, layer, f"{v['A']:.4f}" if v["A"] is not None else "-",
                          f"{v['U']:.4f}" if v["U"] is not None else "-", ratio, str(v["pixels"]))
    table.caption = "A: mean pairwise distance within a class (a sample of up to 1000 pixels each); U: between centroids"
    return table


SplitOpt = Annotated[Optional[str], typer.Option(help="Split to evaluate (default: the config's eval.split).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON, with the "
                                                 "confusion matrix (pixel counts, rows = ground truth).")]
ReportOpt = Annotated[Optional[Path], typer.Option("--report", metavar="DIR", help="Also write DIR/per_class.csv "
                                                   "(IoU, Acc, boundary IoU, boundary F, pixel share per class) and "
                                                   "DIR/confusion.png (the confusion matrix, rows normalised) and "
                                                   "DIR/report.html (one self-contained page).")]
FeaturesOpt = Annotated[bool, typer.Option("--features", help="Also measure the feature space: intra-class spread A "
                                           "and inter-class separation U at every tapped layer (and of the "
                                           "projection heads of a contrastive checkpoint).")]
SavePredictionsOpt = Annotated[Optional[Path], typer.Option(
    "--save-predictions", help="Write each prediction to DIR/labels/<image>.png (train ids) and "
    "DIR/colour/<image>.png (the palette).")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision on a GPU (bfloat16 where native, else float16) "
                                      "(default: float32 metrics).")]
OnnxFileOpt = Annotated[Optional[Path], typer.Option("--onnx", help="Evaluate an exported FILE.onnx (with its "
                                                     "FILE.onnx.json) with onnxruntime on the CPU instead.")]


@app.command()
def evaluate(ctx: typer.Context, checkpoint: CheckpointOpt = None, split: SplitOpt = None,
             data_root: DataRootOpt = None, json_out: JsonOpt = None, scales: ScalesOpt = None, flip: FlipOpt = None,
             mode: ModeOpt = None, crop: CropOpt = None, stride: StrideOpt = None, boundary: BoundaryOpt = None,
             features: FeaturesOpt = False, save_predictions: SavePredictionsOpt = None, device: DeviceOpt = None,
             amp: AmpOpt = False, runs_dir: RunsDirOpt = Path("runs"), onnx: OnnxFileOpt = None,
             report: ReportOpt = None, debug: DebugOpt = False) -> None:
    """Evaluate a checkpoint (or an exported ONNX graph): per-class IoU, mIoU, pixel and mean accuracy,
    boundary IoU and boundary F-score; multi-scale, flip and sliding-window inference as asked.

    The paper's test scales on CamVid, ADE20K, PASCAL-Context, COCO-Stuff: --scales 0.75,1.0,1.25,1.5,1.75,2.0
    --flip, each relative to the checkpoint's eval.base_size when it has one (the ADE20K, PASCAL-Context,
    COCO-Stuff and Cityscapes presets do). Cityscapes at 1024x2048: --mode slide --crop 512x1024.
    """
    from contextrast_cli.atomic import atomic_write_text
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.evaluation.evaluator import evaluate_checkpoint
    from contextrast_cli.evaluation.onnx import evaluate_onnx

    with guarded(ctx, debug), progress() as bar:
        if onnx is not None and (checkpoint is not None or features):
            raise ConfigError("pass either --checkpoint or --onnx, not both" if checkpoint is not None else
                              "--features reads the network's inner layers, which an ONNX graph does not expose; "
                              "pass --checkpoint instead")
        _check_report_folder(report)
        if onnx is not None and (amp or device is not None):
            err.print("[yellow]note:[/] --amp and --device apply to checkpoints; an ONNX graph is evaluated in "
                      "float32 by onnxruntime on the CPU")
        task = bar.add_task("evaluating", total=None)
        common = dict(split=split, data_root=data_root, save_dir=save_predictions,
                      eval_overrides=eval_overrides(scales, flip, mode, crop, stride, boundary),
                      on_batch=lambda i, n: bar.update(task, completed=i, total=n))
        metrics = (evaluate_onnx(onnx, **common) if onnx is not None else
                   evaluate_checkpoint(pick_checkpoint(checkpoint, runs_dir), device=device or "auto", amp=amp,
                                       features=features, **common))
        if json_out:
            atomic_write_text(json_out, json.dumps(metrics, indent=2))
        note = _write_report(metrics, report, invocation(ctx), data_root) if report is not None else None
    if metrics.get("selected_on") == metrics["split"]:
        err.print(f"[yellow]note:[/] this best.pt was chosen by its {metrics['split']} mIoU during training, and is "
                  f"scored on {metrics['split']} again: the score is the best of the run's validations (biased up); "
                  f"score its last.pt, or another split")
    out.print(metrics_table(metrics))
    if metrics.get("features"):
        out.print(features_table(metrics["features"]))
    if save_predictions:
        out.print(f"predictions: {save_predictions}/labels/ and {save_predictions}/colour/")
    if report is not None:
        out.print(f"report: {report}/per_class.csv" + ("" if note else f" and {report}/confusion.png")
                  + f"; page: {report}/report.html")
        if note:
            err.print(f"[yellow]{note}[/]")


def _check_report_folder(folder: Path | None) -> None:
    """ConfigError before the evaluation when ``--report`` names a file."""
    from contextrast_cli.errors import ConfigError

    if folder is not None and folder.exists() and not folder.is_dir():
        raise ConfigError(f"--report {folder}: a file, not a folder; pass a folder for per_class.csv and "
                          f"confusion.png")


def _write_report(metrics: dict, folder: Path, command: str, data_root: Path | None) -> str | None:
    """``viz.report.write_report`` and ``report.html``; DataError when the folder cannot be written."""
    from contextrast_cli.errors import DataError
    from contextrast_cli.experiments.pages import write_evaluation_page
    from contextrast_cli.viz.report import write_report

    try:
        note = write_report(metrics, folder)
        write_evaluation_page(metrics, folder, command, data_root)
        return note
    except OSError as exc:
        raise DataError(f"cannot write {folder}/per_class.csv: {exc.strerror or exc}; pass --report a "
                        f"writable folder") from None
