"""Running an exported ``.onnx`` file: its sidecar read back, an onnxruntime session, a segmentor
adapter, and its evaluation through the same code as a checkpoint's (``evaluate_split``).

The reading side of the export contract lives here (``read_sidecar``, ``SIDECAR_FORMAT``);
``contextrast_cli.export`` writes what it reads."""

import json
from collections.abc import Callable, Sequence
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


def open_session(path: Path, threads: int | None = None, profile_prefix: str | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)):
    """An onnxruntime session on ``providers`` (default: the CPU) using ``threads`` (default:
    torch's thread count); with ``profile_prefix``, onnxruntime's profiler on
    (``session.end_profiling()`` names the file).

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
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime {ort.__version__} cannot load {path}: {first_line(exc)}") from None


def onnx_eval_settings(meta: dict, overrides: dict | None = None, settings: Sequence[str] = ()):
    """The ``EvalConfig`` a graph is evaluated under: the sidecar's (the checkpoint's ``eval``) with
    ``settings`` (``--set eval.key=value``) and then ``overrides`` laid over; ``--argmax`` graphs at a
    single scale without flip, as whole images.

    Raises:
        ConfigError: an invalid override.
    """
    from contextrast_cli.config import eval_settings

    cfg = eval_settings(meta["eval"], overrides, settings)
    return cfg.model_copy(update=dict(scales=(1.0,), flip=False, mode="whole")) if meta["argmax"] else cfg


def graph_sized(images: torch.Tensor, meta: dict) -> torch.Tensor:
    """(B, 3, H, W) images as the graph of ``meta`` takes them: resized (bilinear) to the export
    size for a static graph, unchanged for a dynamic one."""
    if meta["dynamic"] or list(images.shape[-2:]) == list(meta["export_size"]):
        return images
    return F.interpolate(images, size=tuple(meta["export_size"]), mode="bilinear", align_corners=False)


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
    mapped back to uint8 NHWC (rounding recovers the stored pixels exactly). A static graph
    (one fixed export size) takes each image resized to that size (bilinear); its logits are
    resized back to the image's size (bilinear; labels of ``--argmax`` graphs: nearest), so that
    labels are scored at their own size.

    Args:
        providers: onnxruntime execution providers (default: the CPU).
    """

    def __init__(self, path: Path, meta: dict, threads: int | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        self.path = path
        self.session = open_session(path, threads, providers=providers)
        self.meta = meta
        self.num_classes = len(meta["dataset"]["classes"])

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        device = images.device
        images = images.float().cpu()
        if not self.meta["dynamic"]:  # one image at a time, at the export size and back
            out = torch.cat([self._run_static(image[None]) for image in images])
        else:
            out = self._run(images)
        return {"out": out.to(device)}

    def _run_static(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        out = self._labels_or_logits(graph_sized(image, self.meta))
        if tuple(out.shape[-2:]) == size:
            return self._scores(out)
        if self.meta["argmax"]:
            return self._scores(F.interpolate(out[:, None].float(), size=size, mode="nearest")[:, 0].long())
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        return self._scores(self._labels_or_logits(images))

    def _labels_or_logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"image": graph_input(images, self.meta)})[0])

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        """Logits as they are; labels (B, H, W) as one-hot (B, K, H, W)."""
        if self.meta["argmax"]:
            return F.one_hot(out, self.num_classes).permute(0, 3, 1, 2).float()
        return out


def graph_dataset(path: Path, meta: dict, data_root: Path | None = None):
    """The prepared dataset a graph (``meta``: its sidecar) is evaluated on: ``data_root``, or
    where its dataset is prepared by default.

    Raises:
        DataError: the dataset is not prepared, or it has other classes than the graph.
    """
    from contextrast_cli.data.prepared import read_prepared, resolve_root
    from contextrast_cli.evaluation.evaluator import check_classes

    name = meta["dataset"]["name"]
    dataset = read_prepared(resolve_root(name, data_root), name)
    check_classes(dataset, meta["dataset"]["classes"], path)
    return dataset


def evaluate_onnx(path: Path, *, split: str | None = None, data_root: Path | None = None,
                  on_batch: Callable[[int, int], None] | None = None, threads: int | None = None,
                  eval_overrides: dict | None = None, save_dir: Path | None = None,
                  settings: Sequence[str] = ()) -> dict:
    """Evaluate an exported graph with onnxruntime on a prepared split, as ``evaluate_checkpoint`` does.

    Eval settings (split, batch size, scales, flip, mode) come from the sidecar (the
    checkpoint's config) with ``settings`` (``--set eval.key=value``) and ``eval_overrides`` laid over them; ``--argmax`` graphs are
    evaluated at a single scale without flip, as one whole image. A static graph sees each image
    resized to its export size; the labels are scored at their own size (``OnnxSegmentor``).

    Raises:
        ExportError: missing graph or sidecar. DataError: missing data or other classes.
    """
    from contextrast_cli.runtime.device import Runtime
    from contextrast_cli.evaluation.evaluator import evaluate_split

    path = Path(path)
    meta = read_sidecar(path)
    dataset = graph_dataset(path, meta, data_root)
    cfg = onnx_eval_settings(meta, eval_overrides, settings)
    model = OnnxSegmentor(path, meta, threads)
    metrics = evaluate_split(model, dataset, split or cfg.split, cfg, Runtime(torch.device("cpu")),
                             on_batch=on_batch, save_dir=save_dir)
    return {"onnx": str(path), "checkpoint": meta["checkpoint"]["path"], "dataset": str(dataset.root),
            "scales": list(cfg.scales), "flip": cfg.flip, "eval": cfg.model_dump(mode="json"), **metrics}
