"""ONNX export of the contrastive-free inference network: adapt (``graph``) -> export
(``write``) -> verify (``verify``, ``checks``), the sidecar that describes the file
(``sidecar``; ``evaluation.onnx`` reads it), float16 (``half``) and gated int8 (``quantize``).

May import: evaluation, contrast, models, data, runtime, config, errors, atomic (never train,
viz, experiments or cli).
"""

from contextrast_cli.export.graph import ExportOptions, ExportResult
from contextrast_cli.export.write import export_checkpoint

__all__ = ["ExportOptions", "ExportResult", "export_checkpoint"]
