"""``contextrast export``'s library call: the float graph, then its float16 and int8 variants as
asked, with every check that can fail fast done before the slow export."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contextrast_cli.export.gate import GateOptions
from contextrast_cli.export.graph import ExportOptions, ExportResult
from contextrast_cli.export.quantize import QuantizeOptions


@dataclass(frozen=True)
class ExportReport:
    """What ``export_all`` wrote: the float graph's result, and the float16 / int8 reports (or None)."""

    result: ExportResult
    fp16: dict | None = None
    int8: dict | None = None


def export_all(checkpoint: Path, out_file: Path | None, options: ExportOptions, half: bool = False,
               quantize: QuantizeOptions | None = None,
               status: Callable[[str], None] = lambda _: None,
               half_gate: GateOptions | None = None) -> ExportReport:
    """Export ``checkpoint`` to ONNX (verified), then ``FILE.fp16.onnx`` with ``half`` and
    ``FILE.int8.onnx`` with ``quantize``.

    Args:
        half_gate: the images the float16 graph is verified on and its largest mIoU drop
            (default: the whole val split, 1 point).

    Raises:
        DataError: ``quantize``, or ``half`` with verification, without the checkpoint's prepared
            dataset. ExportError: ``half`` with verification where onnxruntime has no CUDA provider.
            Both before the slow export.
        VerificationError: a graph that disagrees with PyTorch, or int8 / float16 over its accuracy gate.
    """
    from contextrast_cli.export.write import export_checkpoint

    half_gate = half_gate or GateOptions()
    if half and options.verify:  # before the slow export: can it be verified here?
        from contextrast_cli.export.half import require_cuda

        require_cuda()
        _check_prepared(checkpoint, half_gate.data_root)
    if quantize is not None:  # the dataset is needed: say so before the slow export
        _check_prepared(checkpoint, quantize.data_root)
    status("exporting to ONNX (torch.onnx, dynamo)")
    result = export_checkpoint(checkpoint, out_file, options)
    fp16 = int8 = None
    if half:
        from contextrast_cli.export.half import half_graph

        status("float16 graph")
        fp16 = half_graph(result.path, verify=options.verify, gate=half_gate)
    if quantize is not None:
        from contextrast_cli.export.quantize import quantize_graph

        int8 = quantize_graph(result.path, quantize, on_step=lambda text: status(f"int8: {text}"))
    return ExportReport(result, fp16, int8)


def _check_prepared(checkpoint: Path, data_root: Path | None) -> None:
    """DataError (one line, how to prepare it) unless the checkpoint's dataset is prepared."""
    from contextrast_cli.data.prepared import read_prepared, resolve_root
    from contextrast_cli.models.checkpoint import load_checkpoint

    name = load_checkpoint(checkpoint)["dataset"]["name"]
    read_prepared(resolve_root(name, data_root), name)
