"""ONNX export of the contrastive-free inference network: adapt (``graph``) -> export
(``write``) -> verify (``verify``), plus the sidecar that describes the file (``sidecar``)."""

from contextrast_cli.export.graph import ExportOptions, ExportResult
from contextrast_cli.export.write import export_checkpoint

__all__ = ["ExportOptions", "ExportResult", "export_checkpoint"]
