"""``contextrast evaluate``."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from contextrast_cli.cli.app import (AmpOpt, BatchSizeOpt, CheckpointOpt, DataRootOpt, DebugOpt, DeviceOpt, RunsDirOpt,
                                     SetOpt, SplitOpt, app, checked_sets, err, existing, guarded, note_replaced, out,
                                     out_option, parse_list, parse_size, pick_checkpoint, progress)
from contextrast_cli.cli.options import EVAL_KEYS
from contextrast_cli.cli.analyze import invocation

ScalesOpt = Annotated[Optional[str], typer.Option(
    "--scales", metavar="S1,S2,...", help="Test scales, e.g. 0.75,1.0,1.25, relative to eval.base_size when set.",
    show_default="eval.scales")]
FlipOpt = Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Also average the flipped prediction.",
                                                 show_default="eval.flip")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", metavar="whole|slide", help="Inference: whole (each "
                                                "image at once) or slide (windows of --crop every --stride pixels).",
                                                show_default="eval.mode")]
CropOpt = Annotated[Optional[str], typer.Option("--crop", metavar="HxW", help="Sliding-window size.",
                                                show_default="the training crop")]
StrideOpt = Annotated[Optional[str], typer.Option("--stride", metavar="HxW", help="Sliding-window step.",
                                                  show_default="2/3 of the crop")]
BoundaryOpt = Annotated[Optional[bool], typer.Option("--boundary/--no-boundary", help="Boundary IoU and boundary "
                                                     "F-score per class.", show_default="eval.boundary")]


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


def _base_text(base: dict) -> str:
    """``base size 2048x512`` (long x short bound) or ``base size 520 (long side)``."""
    return f"base size {base['long']}x{base['short']}" if base.get("short") else f"base size {base['long']} (long side)"


def metrics_table(metrics: dict) -> Table:
    """Per-class IoU and accuracy (and boundary scores), in percent, with the mean row."""
    edges = metrics.get("boundary")
    columns = ["class", "IoU", "Acc"] + (["boundary IoU", "boundary F"] if edges else [])
    table = Table(*columns, title=f"{metrics['split']} ({metrics['num_images']} images), scores in %")
    for name, iou in metrics["IoU"].items():
        extra = [_pct(edges["BIoU"][name]), _pct(edges["BF"][name])] if edges else []
        table.add_row(name, _pct(iou), _pct(metrics["Acc"][name]), *extra)
    table.add_section()
    extra = [f"[bold]{_pct(edges['mBIoU'])}", f"[bold]{_pct(edges['mBF'])}"] if edges else []
    table.add_row("[bold]mean", f"[bold]{_pct(metrics['mIoU'])}", f"[bold]{_pct(metrics['mAcc'])}", *extra)
    return table


def summary_fields(metrics: dict) -> list[str]:
    """The one-line summary's fields (``mIoU 28.11``, ``slide 512x1024 stride 342x683`` ...), each
    kept whole when the line wraps."""
    edges, protocol = metrics.get("boundary"), metrics.get("eval")
    fields = [f"mIoU {_pct(metrics['mIoU'])}", f"aAcc {_pct(metrics['aAcc'])}", f"mAcc {_pct(metrics['mAcc'])}"]
    fields += [f"mBIoU {_pct(edges['mBIoU'])}", f"mBF {_pct(edges['mBF'])}"] if edges else []
    if protocol:
        fields.append(f"scales {','.join(map(str, protocol['scales']))}{' + flip' if protocol['flip'] else ''}")
        fields.append(_mode_text(protocol))
        fields += [_base_text(protocol.get("base_size"))] if protocol.get("base_size") else []
    fields += [metrics["precision"]] if "precision" in metrics else []
    return fields


def _mode_text(protocol: dict) -> str:
    """``whole``, or ``slide 512x1024 stride 342x683`` (the stride as inference computes it)."""
    from contextrast_cli.evaluation.inference import default_stride

    if protocol["mode"] != "slide" or not protocol.get("crop"):
        return protocol["mode"]
    crop = tuple(protocol["crop"])
    stride = tuple(protocol.get("stride") or default_stride(crop))
    return f"slide {crop[0]}x{crop[1]} stride {stride[0]}x{stride[1]}"


def packed(fields: list[str], width: int, gap: str = "  ") -> str:
    """``fields`` joined by ``gap`` into lines of at most ``width`` characters, never breaking one."""
    lines = [""]
    for text in fields:
        if lines[-1] and len(lines[-1]) + len(gap) + len(text) > width:
            lines.append("")
        lines[-1] += (gap if lines[-1] else "") + text
    return "\n".join(lines)


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


JsonOpt = Annotated[Optional[Path], typer.Option(
    "--json", metavar="FILE", help="The metrics as JSON, with the confusion matrix (pixel counts, rows = ground "
    "truth); scores as fractions.", show_default="OUT/metrics.json with -o")]
ReportOpt = Annotated[Optional[Path], typer.Option(
    "--report", metavar="DIR", help="DIR/per_class.csv (IoU, Acc, boundary IoU, boundary F, pixel share per class, "
    "fractions), DIR/confusion.png (the confusion matrix, rows normalised) and DIR/report.html (one "
    "self-contained page).", show_default="OUT with -o")]
FeaturesOpt = Annotated[bool, typer.Option("--features", help="Also measure the feature space: intra-class spread A "
                                           "and inter-class separation U at every tapped layer (and of the "
                                           "projection heads of a contrastive checkpoint).")]
SavePredictionsOpt = Annotated[Optional[Path], typer.Option(
    "--save-predictions", metavar="DIR", help="Write each prediction to DIR/labels/IMAGE.png (train ids) and "
    "DIR/colour/IMAGE.png (the palette).")]
OnnxFileOpt = Annotated[Optional[Path], typer.Option("--onnx", metavar="FILE", help="Evaluate an exported FILE.onnx "
                                                     "(with its FILE.onnx.json) with onnxruntime on the CPU instead.")]
OutOpt = out_option("Write OUT/metrics.json, OUT/per_class.csv and OUT/confusion.png (--json, --report: one of "
                    "them elsewhere).")


@app.command()
def evaluate(ctx: typer.Context, checkpoint: CheckpointOpt = None, onnx: OnnxFileOpt = None, split: SplitOpt = None,
             data_root: DataRootOpt = None, overrides: SetOpt = None, out_dir: OutOpt = None,
             json_out: JsonOpt = None, report: ReportOpt = None, save_predictions: SavePredictionsOpt = None,
             scales: ScalesOpt = None, flip: FlipOpt = None, mode: ModeOpt = None, crop: CropOpt = None,
             stride: StrideOpt = None, boundary: BoundaryOpt = None, features: FeaturesOpt = False,
             batch_size: BatchSizeOpt = None, device: DeviceOpt = None, amp: AmpOpt = False,
             runs_dir: RunsDirOpt = Path("runs"), debug: DebugOpt = False) -> None:
    """Evaluate a checkpoint (or an exported ONNX graph): per-class IoU, mIoU, pixel and mean accuracy,
    boundary IoU and boundary F-score; multi-scale, flip and sliding-window inference as asked.

    Scores are printed in percent; the files hold fractions. --set applies to eval.* (the checkpoint's
    evaluation settings). The paper's test scales on CamVid, ADE20K, PASCAL-Context, COCO-Stuff: --scales
    0.75,1.0,1.25,1.5,1.75,2.0 --flip, each relative to the checkpoint's eval.base_size when it has one (the
    ADE20K, PASCAL-Context, COCO-Stuff and Cityscapes presets do). Cityscapes at 1024x2048: --mode slide --crop
    512x1024.
    """
    from contextrast_cli.evaluation.evaluator import evaluate_checkpoint
    from contextrast_cli.evaluation.onnx import evaluate_onnx

    outputs = Outputs(json_out or (out_dir / "metrics.json" if out_dir else None), report or out_dir,
                      save_predictions)
    with guarded(ctx, debug), progress() as bar:
        _check_inputs(onnx, checkpoint, features, amp, device, outputs)
        task = bar.add_task("evaluating", total=None)
        flags = eval_overrides(scales, flip, mode, crop, stride, boundary) | (
            {"batch_size": batch_size} if batch_size else {})
        common = dict(split=split, data_root=data_root, save_dir=save_predictions, eval_overrides=flags,
                      settings=checked_sets(overrides, EVAL_KEYS, "evaluate"),
                      on_batch=lambda i, n: bar.update(task, completed=i, total=n))
        before = existing(*outputs.files())
        metrics = (evaluate_onnx(onnx, **common) if onnx is not None else
                   evaluate_checkpoint(pick_checkpoint(checkpoint, runs_dir), device=device or "auto", amp=amp,
                                       features=features, **common))
        note = _write_outputs(metrics, outputs, invocation(ctx), data_root)
    _print_results(metrics, outputs, note)
    note_replaced(before)


# what --report (or -o) writes: the page's figures (curves, BANE views of a checkpoint) beside it
REPORT_FILES = ("per_class.csv", "confusion.png", "curves.png", "bane", "report.html")


@dataclass(frozen=True)
class Outputs:
    """Where ``evaluate`` writes: the metrics JSON, the report folder, the predictions folder."""

    json: Path | None
    report: Path | None
    predictions: Path | None

    def files(self) -> list[Path]:
        """What may be replaced (every file below the predictions and BANE-view folders, too)."""
        report = [self.report / name for name in REPORT_FILES] if self.report else []
        return [p for p in (self.json, *report, self.predictions) if p is not None]


def _check_inputs(onnx: Path | None, checkpoint: Path | None, features: bool, amp: bool, device: str | None,
                  outputs: Outputs) -> None:
    """ConfigError before the evaluation for options that do not go together (notes for those ignored)."""
    from contextrast_cli.errors import ConfigError

    if onnx is not None and (checkpoint is not None or features):
        raise ConfigError("pass either --checkpoint or --onnx, not both" if checkpoint is not None else
                          "--features reads the network's inner layers, which an ONNX graph does not expose; "
                          "pass --checkpoint instead")
    _check_report_folder(outputs.report)
    if onnx is not None and (amp or device is not None):
        err.print("[yellow]note:[/] --amp and --device apply to checkpoints; an ONNX graph is evaluated in "
                  "float32 by onnxruntime on the CPU")


def _write_outputs(metrics: dict, outputs: Outputs, command: str, data_root: Path | None) -> str | None:
    """The JSON and the report (its files and page) as asked; the report's note when a figure could not
    be drawn."""
    from contextrast_cli.atomic import atomic_write_text

    if outputs.json:
        atomic_write_text(outputs.json, json.dumps(metrics, indent=2))
    return _write_report(metrics, outputs.report, command, data_root) if outputs.report is not None else None


def _print_results(metrics: dict, outputs: Outputs, note: str | None) -> None:
    if metrics.get("selected_on") == metrics["split"]:
        err.print(f"[yellow]note:[/] this best.pt was chosen by its {metrics['split']} mIoU during training, and is "
                  f"scored on {metrics['split']} again: the score is the best of the run's validations (biased up); "
                  f"score its last.pt, or another split")
    out.print(metrics_table(metrics))
    out.print(packed(summary_fields(metrics), out.width), highlight=False)
    if metrics.get("features"):
        out.print(features_table(metrics["features"]))
    written = [str(outputs.json)] if outputs.json else []
    if outputs.report is not None:
        written += [f"{outputs.report}/{name}" for name in REPORT_FILES if (outputs.report / name).exists()]
    if outputs.predictions:
        written += [f"{outputs.predictions}/labels/", f"{outputs.predictions}/colour/"]
    if written:
        out.print(f"wrote {', '.join(map(escape, written))}", soft_wrap=True)
    if note:
        err.print(f"[yellow]{escape(note)}[/]")


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
