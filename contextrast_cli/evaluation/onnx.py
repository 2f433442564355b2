"""Running an exported ``.onnx`` file: its sidecar read back, an onnxruntime session, a segmentor
adapter, and its evaluation through the same code as a checkpoint's (``evaluate_split``).

The reading side of the export contract lives here (``read_sidecar``, ``SIDECAR_FORMAT``);
``contextrast_cli.export`` writes what it reads."""

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from contextrast_cli.errors import ExportError, first_line

SIDECAR_FORMAT = "contextrast-onnx"


def read_sidecar(path: Path) -> dict:
    """The ``FILE.onnx.json`` written beside an exported graph.

    Raises:
        ExportError: the graph or its sidecar is missing or not contextrast's.
    """
    path = Path(path)
    sidecar = Path(f"{path}.json")
    if not path.is_file():
        raise ExportError(f"ONNX file {path} does not exist")
    if not sidecar.is_file():
        raise ExportError(f"{path} has no sidecar {sidecar.name} (classes, normalisation, I/O spec); "
                          f"export it with `contextrast export --onnx`")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExportError(f"{sidecar} is not valid JSON ({exc}); re-export") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise ExportError(f"{sidecar} is not a contextrast ONNX sidecar (no '{SIDECAR_FORMAT}' marker)")
    return meta


def open_session(path: Path, threads: int | None = None, profile_prefix: str | None = None):
    """A CPUExecutionProvider session using ``threads`` (default: torch's thread count);
    with ``profile_prefix``, onnxruntime's profiler on (``session.end_profiling()`` names the file).

    Raises:
        ExportError: onnxruntime cannot load the graph (e.g. an opset it does not know yet).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime {ort.__version__} cannot load {path}: {first_line(exc)}") from None


def graph_input(images: torch.Tensor, meta: dict):
    """(B, 3, H, W) RGB float images in [0, 1] -> the numpy array the graph of ``meta`` takes."""
    if meta["preprocessing"]:
        pixels = (images * 255).round().clamp(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()
    if meta.get("format_version", 1) < 2:  # exported before the graph normalised
        norm = meta["normalization"]
        mean, std = (torch.tensor(norm[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
        return ((images - mean) / std).contiguous().numpy()
    return images.contiguous().numpy()


class OnnxSegmentor:
    """An onnxruntime session called like a segmentor in eval mode, for ``predict_probs``.

    Takes (B, 3, H, W) RGB float images in [0, 1] (the graph normalises), returns
    ``{"out": (B, K, H, W)}``: logits, or one-hot scores for ``--argmax`` graphs (their
    labels, exactly, at a single scale). ``--include-preprocessing`` graphs get the images
    mapped back to uint8 NHWC (rounding recovers the stored pixels exactly).
    """

    def __init__(self, path: Path, meta: dict, threads: int | None = None) -> None:
        self.path = path
        self.session = open_session(path, threads)
        self.meta = meta
        self.num_classes = len(meta["dataset"]["classes"])

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        device = images.device
        images = images.float().cpu()
        if not self.meta["dynamic"]:
            self._check_static(images)
            out = torch.cat([self._run(image[None]) for image in images])
        else:
            out = self._run(images)
        return {"out": out.to(device)}

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.from_numpy(self.session.run(None, {"image": graph_input(images, self.meta)})[0])
        if self.meta["argmax"]:
            return F.one_hot(out, self.num_classes).permute(0, 3, 1, 2).float()
        return out

    def _check_static(self, images: torch.Tensor) -> None:
        size = list(images.shape[-2:])
        if size != self.meta["export_size"]:
            height, width = self.meta["export_size"]
            raise ExportError(f"{self.path} was exported with --static for {height}x{width} inputs but got "
                              f"{size[0]}x{size[1]} images; re-export with --dynamic")


def evaluate_onnx(path: Path, *, split: str | None = None, data_root: Path | None = None,
                  on_batch: Callable[[int, int], None] | None = None, threads: int | None = None,
                  eval_overrides: dict | None = None, save_dir: Path | None = None) -> dict:
    """Evaluate an exported graph with onnxruntime on a prepared split, as ``evaluate_checkpoint`` does.

    Eval settings (split, batch size, scales, flip, mode) come from the sidecar (the
    checkpoint's config) with ``eval_overrides`` laid over them; ``--argmax`` graphs are
    evaluated at a single scale without flip, as one whole image.

    Raises:
        ExportError: missing graph or sidecar. DataError: missing data or other classes.
    """
    from contextrast_cli.config import eval_settings
    from contextrast_cli.data.prepared import read_prepared, resolve_root
    from contextrast_cli.runtime.device import Runtime
    from contextrast_cli.evaluation.evaluator import check_classes, evaluate_split

    path = Path(path)
    meta = read_sidecar(path)
    name = meta["dataset"]["name"]
    dataset = read_prepared(resolve_root(name, data_root), name)
    check_classes(dataset, meta["dataset"]["classes"], path)
    settings = {**meta["eval"], **(eval_overrides or {})}
    if meta["argmax"]:
        settings.update(scales=(1.0,), flip=False, mode="whole")
    cfg = eval_settings(settings)
    model = OnnxSegmentor(path, meta, threads)
    metrics = evaluate_split(model, dataset, split or cfg.split, cfg, Runtime(torch.device("cpu")),
                             on_batch=on_batch, save_dir=save_dir)
    return {"onnx": str(path), "checkpoint": meta["checkpoint"]["path"], "dataset": str(dataset.root),
            "scales": list(cfg.scales), "flip": cfg.flip, **metrics}
