"""``contextrast evaluate``."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, DeviceOpt, RunsDirOpt, app, guarded,
                                     out, pick_checkpoint, progress)


def metrics_table(metrics: dict) -> Table:
    table = Table("class", "IoU", "Acc", title=f"{metrics['split']} ({metrics['num_images']} images)")
    for name, iou in metrics["IoU"].items():
        acc = metrics["Acc"][name]
        table.add_row(name, "-" if iou is None else f"{iou * 100:.2f}", "-" if acc is None else f"{acc * 100:.2f}")
    table.add_section()
    table.add_row("[bold]mean", f"[bold]{metrics['mIoU'] * 100:.2f}", f"[bold]{metrics['mAcc'] * 100:.2f}")
    table.caption = (f"mIoU {metrics['mIoU'] * 100:.2f}  aAcc {metrics['aAcc'] * 100:.2f}  "
                     f"mAcc {metrics['mAcc'] * 100:.2f}" + (f"  ({metrics['precision']})" if "precision" in metrics else ""))
    return table


@app.command()
def evaluate(
    ctx: typer.Context,
    checkpoint: CheckpointOpt = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate (default: the config's eval.split).")] = None,
    data_root: DataRootOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON.")] = None,
    device: DeviceOpt = "auto",
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision on a GPU (bfloat16 where native, else float16) "
                                      "(default: float32 metrics).")] = False,
    runs_dir: RunsDirOpt = Path("runs"),
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="Evaluate an exported FILE.onnx (with its "
                                                 "FILE.onnx.json) with onnxruntime on the CPU instead.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a checkpoint (or an exported ONNX graph): per-class IoU, mIoU, pixel and mean accuracy."""
    from contextrast_cli.atomic import atomic_write_text
    from contextrast_cli.engine.evaluator import evaluate_checkpoint
    from contextrast_cli.errors import ConfigError

    with guarded(ctx, debug), progress() as bar:
        if onnx is not None and checkpoint is not None:
            raise ConfigError("pass either --checkpoint or --onnx, not both")
        task = bar.add_task("evaluating", total=None)
        on_batch = lambda i, n: bar.update(task, completed=i, total=n)  # noqa: E731
        if onnx is not None:
            from contextrast_cli.engine.onnx_eval import evaluate_onnx

            metrics = evaluate_onnx(onnx, split=split, data_root=data_root, on_batch=on_batch)
        else:
            metrics = evaluate_checkpoint(pick_checkpoint(checkpoint, runs_dir), split=split, data_root=data_root,
                                          device=device, amp=amp, on_batch=on_batch)
        if json_out:
            atomic_write_text(json_out, json.dumps(metrics, indent=2))
    out.print(metrics_table(metrics))
