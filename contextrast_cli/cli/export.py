"""``contextrast export``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, RunsDirOpt, app, err, guarded, out,
                                     parse_size, pick_checkpoint, renamed)


@app.command()
def export(
    ctx: typer.Context,
    onnx: Annotated[bool, typer.Option("--onnx", help="Write an ONNX graph: the default, and so far the only "
                                       "format (the flag may be given or left out).")] = False,
    checkpoint: CheckpointOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="ONNX file (default: the checkpoint "
                                                     "with .onnx); FILE.json is written beside it.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    size: Annotated[Optional[str], typer.Option(help="Traced and verified size HxW (default: the crop).")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic/--static", help=(
        "--dynamic: symbolic batch, height and width (onnxruntime, TensorRT with profiles); --static: fixed "
        "1 x H x W with every size a constant, no Shape/Gather/Concat chains feeding Resize or Reshape "
        "(checked), for runtimes without dynamic shapes (OpenCV DNN, many embedded runtimes)."))] = True,
    argmax: Annotated[bool, typer.Option("--argmax", help="Output int64 labels (N, H, W), not logits.")] = False,
    include_preprocessing: Annotated[bool, typer.Option(
        "--include-preprocessing", help="Input uint8 RGB (N, H, W, 3) instead of float RGB in [0, 1] (N, 3, H, W).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify",
                                         help="Full onnx check, then onnxruntime vs PyTorch.")] = True,
    half: Annotated[bool, typer.Option("--half", help="Also write FILE.fp16.onnx (float16 weights and "
                                       "activations, float32 input/output) for GPUs; verified on onnxruntime's "
                                       "CUDA provider, so on a CPU machine it needs --no-verify.")] = False,
    quantize: Annotated[Optional[str], typer.Option(
        "--quantize", help="int8: also write FILE.int8.onnx (onnxruntime static QDQ quantization, per-channel "
        "weights, calibrated on the dataset's images), only if it keeps its accuracy (--max-miou-drop).")] = None,
    calibration_split: Annotated[str, typer.Option(help="Split whose images calibrate int8.")] = "train",
    calibration_images: Annotated[int, typer.Option(help="Calibration images (evenly spread over the split).")] = 64,
    verify_images: Annotated[Optional[int], typer.Option(
        help="int8 vs float on this many validation images (default: the whole split).")] = None,
    max_miou_drop: Annotated[float, typer.Option(help="Largest mIoU loss of int8, in points, that is "
                                                 "written.")] = 1.0,
    exclude_nodes: Annotated[Optional[str], typer.Option(
        help="Nodes kept in float, comma-separated (a refused int8 export names candidates).")] = None,
    data_root: DataRootOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    debug: DebugOpt = False,
    output: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,
    height: Annotated[Optional[int], typer.Option("--height", min=1, hidden=True)] = None,
    width: Annotated[Optional[int], typer.Option("--width", min=1, hidden=True)] = None,
) -> None:
    """Export the contrastive-free inference network (no projection heads) to ONNX, verified.

    The graph normalises its input itself: feed RGB in [0, 1], or uint8 RGB with --include-preprocessing.
    """
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.export import ExportOptions, export_checkpoint

    del onnx  # the only format
    with guarded(ctx, debug):
        out_file = renamed(out_file, output, "--output", "--out")
        if height is not None or width is not None:
            if height is None or width is None:
                raise ConfigError("--height and --width go together; use --size HxW")
            size = renamed(size, f"{height}x{width}", "--height/--width", "--size HxW")
        h, w = parse_size(size) if size else (None, None)
        options = ExportOptions(opset=opset, height=h, width=w, dynamic=dynamic, argmax=argmax,
                                preprocessing=include_preprocessing, verify=verify)
        quant = _quantize_options(quantize, calibration_split, calibration_images, verify_images, max_miou_drop,
                                  exclude_nodes, data_root)
        path = pick_checkpoint(checkpoint, runs_dir)
        if quant is not None:  # the dataset is needed: say so before the slow export
            _check_prepared(path, data_root)
        if half and verify:  # before the slow export: can it be verified here?
            from contextrast_cli.export.half import require_cuda

            require_cuda()
        with err.status("exporting to ONNX (torch.onnx, dynamo)"):
            result = export_checkpoint(path, out_file, options)
        fp16 = None
        if half:
            from contextrast_cli.export.half import half_graph

            fp16 = half_graph(result.path, verify=verify)
        int8 = None
        if quant is not None:
            from contextrast_cli.export.quantize import quantize_graph

            with err.status("int8 quantization") as status:
                int8 = quantize_graph(result.path, quant, on_step=lambda text: status.update(f"int8: {text}"))
    out.print(_parameter_table(result.counts))
    if result.verification:
        out.print(_verification_table(result.verification))
        ref = result.reference
        out.print(f"second runtime, onnx.reference.ReferenceEvaluator, at {ref['shape'][1]}x{ref['shape'][2]}: "
                  + (f"max |logit diff| {ref['max_abs_diff']:.2e} against onnxruntime" if "max_abs_diff" in ref
                     else f"labels equal to onnxruntime's on {1 - ref['label_mismatch']:.2%} of pixels")
                  if ref else "second runtime, onnx.reference: skipped (a static graph this large is too slow in it)")
    out.print(f"[bold green]wrote[/] {escape(str(result.path))} and {escape(result.sidecar.name)}")
    if fp16 is not None:
        checked = (f"verified on CUDA: argmax agreement {fp16['verification']['agreement']:.2%}"
                   if fp16["verification"] else "[yellow]not verified[/] (--no-verify)")
        out.print(f"[bold green]wrote[/] {escape(str(fp16['path']))} and {escape(fp16['path'].name)}.json; {checked}")
    if int8 is not None:
        out.print(_int8_table(int8))
        out.print(f"[bold green]wrote[/] {escape(str(int8['path']))} and {escape(int8['path'].name)}.json")


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


def _check_prepared(checkpoint: Path, data_root: Path | None) -> None:
    """DataError (one line, how to prepare it) unless the checkpoint's dataset is prepared."""
    from contextrast_cli.data.prepared import read_prepared, resolve_root
    from contextrast_cli.engine.checkpoint import load_checkpoint

    name = load_checkpoint(checkpoint)["dataset"]["name"]
    read_prepared(resolve_root(name, data_root), name)


def _int8_table(report: dict) -> Table:
    table = Table("graph", f"mIoU ({report['images']} {report['split']} images)", "latency (batch 1, onnxruntime)",
                  title="int8 vs float")
    for key in ("float", "int8"):
        table.add_row(key, f"{report[key]['mIoU'] * 100:.2f}", f"{report[key]['latency_ms']:.1f} ms")
    table.caption = (f"drop {report['miou_drop']:.2f} points, pixel agreement {report['pixel_agreement']:.2%}, "
                     f"int8 {report['speedup']:.2f}x faster; calibrated on {report['calibration_images']} "
                     f"{report['calibration_split']} images")
    return table


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
