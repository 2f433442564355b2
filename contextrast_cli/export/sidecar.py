"""The ``FILE.onnx.json`` sidecar: everything a consumer needs besides the graph."""


import torch

from contextrast_cli import __version__
from contextrast_cli.evaluation.onnx import SIDECAR_FORMAT
from contextrast_cli.export.graph import ExportOptions, ExportResult, traced_size

SIDECAR_VERSION = 2  # 1: float inputs were normalised outside the graph


def build_sidecar(payload: dict, cfg, result: ExportResult, options: ExportOptions, digest: str) -> dict:
    """Everything a consumer needs besides the graph: classes, palette, normalisation, I/O spec, provenance."""
    import onnx
    import onnxruntime

    axes = {"batch": 0, "height": 1, "width": 2} if options.preprocessing else {"batch": 0, "height": 2, "width": 3}
    out_axes = {"batch": 0, "height": 1, "width": 2} if options.argmax else {"batch": 0, "height": 2, "width": 3}
    num_classes = len(payload["dataset"]["classes"])
    height, width = options.size
    dims = ("batch", "height", "width") if options.dynamic else (1, height, width)
    in_shape = [dims[0], dims[1], dims[2], 3] if options.preprocessing else [dims[0], 3, dims[1], dims[2]]
    out_shape = [dims[0], dims[1], dims[2]] if options.argmax else [dims[0], num_classes, dims[1], dims[2]]
    return {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "onnx": result.path.name,
        "checkpoint": {"path": str(result.checkpoint.resolve()), "sha256": digest,
                       "iteration": payload.get("iteration")},
        "model": cfg.model.model_dump(mode="json"), "dataset": payload["dataset"],
        "normalization": {**payload["normalization"], "units": "RGB scaled to [0, 1]", "applied": "inside the graph"},
        "preprocessing": options.preprocessing, "argmax": options.argmax, "dynamic": options.dynamic,
        "export_size": [height, width], "traced_size": list(traced_size(options)), "opset": options.opset,
        "input": {"name": "image", "dtype": "uint8" if options.preprocessing else "float32",
                  "layout": "NHWC" if options.preprocessing else "NCHW", "shape": in_shape,
                  "dynamic_axes": axes if options.dynamic else {},
                  "meaning": "RGB 0-255" if options.preprocessing else "RGB / 255 (the graph normalises)"},
        "output": {"name": "labels" if options.argmax else "logits",
                   "dtype": "int64" if options.argmax else "float32",
                   "layout": "NHW" if options.argmax else "NCHW", "shape": out_shape,
                   "dynamic_axes": out_axes if options.dynamic else {}},
        "eval": cfg.eval.model_dump(mode="json"),
        "parameters": result.counts, "verification": result.verification, "reference_check": result.reference,
        "exporter": "torch.onnx.export(dynamo=True), optimised with onnxscript",
        "versions": {"contextrast": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }
