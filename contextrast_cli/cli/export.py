"""``contextrast export``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from contextrast_cli.cli.app import (CheckpointOpt, DebugOpt, RunsDirOpt, app, err, guarded, out, parse_size,
                                     pick_checkpoint, renamed)


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
    dynamic: Annotated[bool, typer.Option("--dynamic/--static",
                                          help="Symbolic batch, height and width, or fixed 1 x H x W.")] = True,
    argmax: Annotated[bool, typer.Option("--argmax", help="Output int64 labels (N, H, W), not logits.")] = False,
    include_preprocessing: Annotated[bool, typer.Option(
        "--include-preprocessing", help="Input uint8 RGB (N, H, W, 3) instead of float RGB in [0, 1] (N, 3, H, W).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify",
                                         help="Full onnx check, then onnxruntime vs PyTorch.")] = True,
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
        path = pick_checkpoint(checkpoint, runs_dir)
        with err.status("exporting to ONNX (torch.onnx, dynamo)"):
            result = export_checkpoint(path, out_file, options)
    out.print(_parameter_table(result.counts))
    if result.verification:
        out.print(_verification_table(result.verification))
    out.print(f"[bold green]wrote[/] {escape(str(result.path))} and {escape(result.sidecar.name)}")


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
