"""``contextrast export``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, RunsDirOpt, SetOpt, app, checked_sets, err,
                                     existing, guarded, note_replaced, out, out_option, parse_size, pick_checkpoint,
                                     renamed)
from contextrast_cli.cli.options import EVAL_KEYS


OnnxFlagOpt = Annotated[bool, typer.Option("--onnx", hidden=True, help="ONNX, the default and only format.")]
OutOpt = out_option("ONNX file; FILE.json is written beside it.", "FILE", "the checkpoint with .onnx")
OpsetOpt = Annotated[int, typer.Option(metavar="N", help="ONNX opset (18 or newer).")]
SizeOpt = Annotated[Optional[str], typer.Option(metavar="HxW", help="Traced and verified size.",
                                                show_default="the training crop")]
DynamicOpt = Annotated[bool, typer.Option("--dynamic/--static", help=(
    "Dynamic: symbolic batch, height and width (onnxruntime, TensorRT with profiles); static: fixed 1 x H x W "
    "with every size a constant, no Shape/Gather/Concat chains feeding Resize or Reshape (checked), for runtimes "
    "without dynamic shapes (OpenCV DNN, many embedded runtimes)."))]
ArgmaxOpt = Annotated[bool, typer.Option("--argmax", help="Output int64 labels (N, H, W), not logits.")]
PreprocessingOpt = Annotated[bool, typer.Option("--include-preprocessing", help="Input uint8 RGB (N, H, W, 3) "
                                                "instead of float RGB in [0, 1] (N, 3, H, W).")]
VerifyOpt = Annotated[bool, typer.Option("--verify/--no-verify", help="Full onnx check, then onnxruntime vs PyTorch.")]
HalfOpt = Annotated[bool, typer.Option("--half", help="Also write FILE.fp16.onnx (float16 weights and activations, "
                                       "float32 input/output) for GPUs, only if it keeps its accuracy on onnxruntime's "
                                       "CUDA provider (--max-miou-drop), so on a CPU machine it needs --no-verify.")]
QuantizeOpt = Annotated[Optional[str], typer.Option(
    "--quantize", metavar="int8", help="Also write FILE.int8.onnx (onnxruntime static QDQ quantization, per-channel "
    "weights, calibrated on the dataset's images), only if it keeps its accuracy (--max-miou-drop); both graphs' "
    "scores are printed side by side.")]
CalibrationSplitOpt = Annotated[str, typer.Option(metavar="SPLIT", help="Split whose images calibrate int8.")]
CalibrationImagesOpt = Annotated[int, typer.Option(metavar="N", help="Calibration images (evenly spread over the "
                                                   "split).")]
VerifyImagesOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Validation images int8 (or float16) is "
                                                        "compared with float on.", show_default="the whole split")]
MaxDropOpt = Annotated[float, typer.Option(metavar="POINTS", help="Largest mIoU loss of int8 or float16, in points, "
                                           "that is written (measured as evaluate --onnx measures it).")]
ExcludeOpt = Annotated[Optional[str], typer.Option(metavar="NODES", help="Nodes kept in float, comma-separated (a "
                                                   "refused int8 export names candidates).")]
OldOutputOpt = Annotated[Optional[Path], typer.Option("--output", hidden=True)]
OldSideOpt = Annotated[Optional[int], typer.Option(min=1, hidden=True)]


@app.command()
def export(ctx: typer.Context, onnx: OnnxFlagOpt = False, checkpoint: CheckpointOpt = None, out_file: OutOpt = None,
           opset: OpsetOpt = 18, size: SizeOpt = None, dynamic: DynamicOpt = True, argmax: ArgmaxOpt = False,
           include_preprocessing: PreprocessingOpt = False, verify: VerifyOpt = True, half: HalfOpt = False,
           quantize: QuantizeOpt = None, calibration_split: CalibrationSplitOpt = "train",
           calibration_images: CalibrationImagesOpt = 64, verify_images: VerifyImagesOpt = None,
           max_miou_drop: MaxDropOpt = 1.0, exclude_nodes: ExcludeOpt = None, data_root: DataRootOpt = None,
           overrides: SetOpt = None, runs_dir: RunsDirOpt = Path("runs"), debug: DebugOpt = False,
           output: OldOutputOpt = None,
           height: OldSideOpt = None, width: OldSideOpt = None) -> None:
    """Export the contrastive-free inference network (no projection heads) to ONNX, verified.

    The graph normalises its input itself: feed RGB in [0, 1], or uint8 RGB with --include-preprocessing.
    --set eval.KEY=VALUE changes the evaluation settings the sidecar records (what evaluate --onnx and the
    int8 and float16 gates use). Existing files are replaced, with a note.
    """
    from contextrast_cli.export import ExportOptions
    from contextrast_cli.export.gate import GateOptions
    from contextrast_cli.export.pipeline import export_all

    del onnx  # the only format
    with guarded(ctx, debug):
        out_file = renamed(out_file, output, "--output", "--out")
        h, w = _export_size(size, height, width)
        options = ExportOptions(opset=opset, height=h, width=w, dynamic=dynamic, argmax=argmax,
                                preprocessing=include_preprocessing, verify=verify,
                                settings=checked_sets(overrides, EVAL_KEYS, "export"))
        quant = _quantize_options(quantize, calibration_split, calibration_images, verify_images, max_miou_drop,
                                  exclude_nodes, data_root)
        gate = GateOptions(images=verify_images, max_miou_drop=max_miou_drop, data_root=data_root)
        path = pick_checkpoint(checkpoint, runs_dir)
        before = existing((out_file or path).parent, recursive=False)
        with err.status("exporting") as status:
            report = export_all(path, out_file, options, half, quant, status=status.update, half_gate=gate)
    _print_report(report)
    note_replaced(before)


def _export_size(size: str | None, height: int | None, width: int | None) -> tuple[int | None, int | None]:
    """``--size HxW`` (or the old ``--height``/``--width`` pair) as (H, W), or (None, None)."""
    from contextrast_cli.errors import ConfigError

    if height is not None or width is not None:
        if height is None or width is None:
            raise ConfigError("--height and --width go together; use --size HxW")
        size = renamed(size, f"{height}x{width}", "--height/--width", "--size HxW")
    return parse_size(size) if size else (None, None)


def _print_report(report) -> None:
    result = report.result
    out.print(_parameter_table(result.counts))
    if result.verification:
        out.print(_verification_table(result.verification))
        ref = result.reference
        out.print(f"second runtime, onnx.reference.ReferenceEvaluator, at {ref['shape'][1]}x{ref['shape'][2]}: "
                  + (f"max |logit diff| {ref['max_abs_diff']:.2e} against onnxruntime" if "max_abs_diff" in ref
                     else f"labels equal to onnxruntime's on {1 - ref['label_mismatch']:.2%} of pixels")
                  if ref else "second runtime, onnx.reference: skipped (a static graph this large is too slow in it)")
    out.print(f"[bold green]wrote[/] {escape(str(result.path))} and {escape(result.sidecar.name)}")
    if report.fp16 is not None:
        fp16 = report.fp16
        checked = _half_check(fp16["verification"])
        out.print(f"[bold green]wrote[/] {escape(str(fp16['path']))} and {escape(fp16['path'].name)}.json; {checked}")
    if report.int8 is not None:
        for table in _int8_tables(report.int8):
            out.print(table)
        out.print(f"[bold green]wrote[/] {escape(str(report.int8['path']))} and {escape(report.int8['path'].name)}.json")


def _half_check(report: dict | None) -> str:
    if report is None:
        return "[yellow]not verified[/] (--no-verify)"
    where = report.get("providers", ["CUDA"])[0].removesuffix("ExecutionProvider")
    return (f"verified on {where} on {report['images']} {report['split']} images: mIoU {report['float']['mIoU'] * 100:.2f} "
            f"-> {report['fp16']['mIoU'] * 100:.2f} (drop {report['miou_drop']:.2f} points), pixel agreement "
            f"{report['pixel_agreement']:.2%}")


def _quantize_options(quantize, split, images, verify_images, max_drop, exclude, data_root):
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.export.quantize import QuantizeOptions

    if quantize is None:
        return None
    if quantize != "int8":
        raise ConfigError(f"--quantize {quantize}: the only quantization is int8")
    nodes = tuple(n.strip() for n in (exclude or "").split(",") if n.strip())
    return QuantizeOptions(calibration_split=split, calibration_images=images, verify_images=verify_images,
                           max_miou_drop=max_drop, exclude_nodes=nodes, data_root=data_root)


def _int8_tables(report: dict) -> list[Table]:
    """int8 against float, side by side, in percent: mIoU, aAcc, mAcc and latency, then per class."""
    graphs = ("float", "int8")
    scores = Table("score", *graphs, "int8 - float", title=f"int8 vs float, {report['images']} {report['split']} "
                   f"images (scores in %)")
    for key in ("mIoU", "aAcc", "mAcc"):
        values = [report[g][key] for g in graphs]
        scores.add_row(key, *(_pct(v) for v in values), _pct(None if None in values else values[1] - values[0], True))
    latency = [report[g]["latency_ms"] for g in graphs]
    scores.add_row("latency (batch 1)", *(f"{v:.1f} ms" for v in latency), f"{report['speedup']:.2f}x faster")
    protocol = report["eval"]
    how = (f"scales {','.join(map(str, protocol['scales']))}{' + flip' if protocol['flip'] else ''}, "
           f"{protocol['mode']}")
    scores.caption = (f"drop {report['miou_drop']:.2f} points, pixel agreement {report['pixel_agreement']:.2%}; "
                      f"calibrated on {report['calibration_images']} {report['calibration_split']} images; evaluated "
                      f"as evaluate --onnx does ({how})")
    per_class = Table("class", "IoU float", "IoU int8", "Acc float", "Acc int8", title="per class (%)")
    for name in report["float"]["IoU"]:
        per_class.add_row(name, *(_pct(report[g][key][name]) for key in ("IoU", "Acc") for g in graphs))
    return [scores, per_class]


def _pct(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"


def _parameter_table(counts: dict) -> Table:
    table = Table("parameters", "training model", "exported graph", title="contrastive-free export")
    table.add_row("segmentation network", f"{counts['network']:,}", f"{counts['network']:,}")
    table.add_row("auxiliary heads (training only)", f"{counts['training_only']:,}", "-")
    table.add_row("projection heads (contrast)", f"{counts['projection']:,}", "-")
    table.add_section()
    table.add_row("[bold]total", f"[bold]{counts['training_total']:,}", f"[bold]{counts['network']:,}")
    table.caption = (f"BatchNorm ({counts['bn_statistics']:,} running statistics) is folded into the convolutions: "
                     f"the graph's network initializers hold {counts.get('initializer_elements', 0):,} numbers")
    return table


def _verification_table(rows: list[dict]) -> Table:
    table = Table("input (N x H x W)", "max |logit diff|", "argmax agreement", "PyTorch float32 diff",
                  title="onnxruntime vs PyTorch float64 (onnx.checker full check passed)")
    for row in rows:
        diff = "n/a (labels)" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2e}"
        table.add_row(" x ".join(map(str, row["shape"])), diff, f"{row['agreement']:.4%}",
                      f"{row['torch_float32_diff']:.2e}")
    table.caption = "limits: logit diff 1e-3, agreement 99.9%"
    return table
