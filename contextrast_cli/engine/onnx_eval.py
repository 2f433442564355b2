"""onnxruntime inference of exported graphs: parity with PyTorch, and evaluation of a ``.onnx``
file with the same metrics code as checkpoint evaluation (``evaluate_split``)."""

import copy
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from contextrast_cli.errors import ExportError, VerificationError, first_line
from contextrast_cli.export import SIDECAR_FORMAT, ExportOptions, InferenceGraph

MAX_ABS_DIFF = 1e-3
MIN_AGREEMENT = 0.999


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


def verification_sizes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, H, W) of the parity inputs: the export size, then an odd other size and batch 2 if dynamic."""
    height, width = size
    if not dynamic:
        return [(1, height, width), (1, height, width)]
    return [(1, height, width), (2, max(height * 3 // 4, 1) | 1, max(width * 5 // 6, 1) | 1)]


@torch.no_grad()
def verify_graph(path: Path, graph: InferenceGraph, options: ExportOptions) -> list[dict]:
    """onnxruntime vs PyTorch on random images at ``verification_sizes``.

    The PyTorch reference runs in float64, so the difference is the graph's own
    float32 error; PyTorch's float32 error against the same reference is reported
    beside it (random-init OCRNet on noise images: both ~5e-4 to 8e-4).

    Returns:
        One dict per input: ``shape``, ``max_abs_diff`` (None for argmax graphs),
        ``torch_float32_diff``, ``agreement`` (argmax, against the float64 reference).

    Raises:
        VerificationError: a logit difference over 1e-3 or argmax agreement under 99.9%.
    """
    session = open_session(path)
    reference = copy.deepcopy(graph.network).double()
    generator = torch.Generator().manual_seed(0)
    report = []
    for batch, height, width in verification_sizes(options.size, options.dynamic):
        pixels = torch.randint(0, 256, (batch, height, width, 3), generator=generator, dtype=torch.uint8)
        images = graph.normalize(pixels)
        ref = reference(images.double())["out"]  # (B, K, H, W) float64
        torch_diff = float((graph.network(images)["out"].double() - ref).abs().max())
        feed = pixels if options.preprocessing else images
        got = torch.from_numpy(session.run(None, {"image": feed.numpy()})[0])
        if options.argmax and got.dtype != torch.int64:
            raise VerificationError(f"the --argmax graph returns {got.dtype}, not int64")
        diff = None if options.argmax else float((got.double() - ref).abs().max())
        agreement = float(((got if options.argmax else got.argmax(1)) == ref.argmax(1)).double().mean())
        report.append({"shape": [batch, height, width], "max_abs_diff": diff, "torch_float32_diff": torch_diff,
                       "agreement": agreement})
        if (diff is not None and diff > MAX_ABS_DIFF) or agreement < MIN_AGREEMENT:
            shown = "n/a" if diff is None else f"{diff:.2e}"
            raise VerificationError(f"onnxruntime disagrees with PyTorch on {batch}x{height}x{width} inputs: "
                                    f"max |logit diff| {shown} (limit {MAX_ABS_DIFF:g}; PyTorch float32 itself: "
                                    f"{torch_diff:.2e}), argmax agreement {agreement:.4%} (limit "
                                    f"{MIN_AGREEMENT:.1%}); nothing was written")
    return report


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


class OnnxSegmentor:
    """An onnxruntime session called like a segmentor in eval mode, for ``predict_probs``.

    Takes normalised (B, 3, H, W) float images, returns ``{"out": (B, K, H, W)}``:
    logits, or one-hot scores for ``--argmax`` graphs (their labels, exactly, at
    a single scale). ``--include-preprocessing`` graphs get the images mapped back
    to uint8 NHWC (rounding recovers the stored pixels exactly).
    """

    def __init__(self, path: Path, meta: dict, threads: int | None = None) -> None:
        self.path = path
        self.session = open_session(path, threads)
        self.meta = meta
        self.num_classes = len(meta["dataset"]["classes"])
        self.mean = torch.tensor(meta["normalization"]["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(meta["normalization"]["std"]).view(1, 3, 1, 1)

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
        if self.meta["preprocessing"]:
            pixels = ((images * self.std + self.mean) * 255).round().clamp(0, 255).to(torch.uint8)
            feed = pixels.permute(0, 2, 3, 1).contiguous()
        else:
            feed = images.contiguous()
        out = torch.from_numpy(self.session.run(None, {"image": feed.numpy()})[0])
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
                  on_batch: Callable[[int, int], None] | None = None, threads: int | None = None) -> dict:
    """Evaluate an exported graph with onnxruntime on a prepared split, as ``evaluate_checkpoint`` does.

    Eval settings (split, batch size, scales, flip) come from the sidecar (the
    checkpoint's config); ``--argmax`` graphs are evaluated at a single scale without flip.

    Raises:
        ExportError: missing graph or sidecar. DataError: missing data or other classes.
    """
    from contextrast_cli.config import EvalConfig
    from contextrast_cli.data.prepared import read_prepared, resolve_root
    from contextrast_cli.engine.device import Runtime
    from contextrast_cli.engine.evaluator import check_classes, evaluate_split

    path = Path(path)
    meta = read_sidecar(path)
    name = meta["dataset"]["name"]
    dataset = read_prepared(resolve_root(name, data_root), name)
    check_classes(dataset, meta["dataset"]["classes"], path)
    cfg = EvalConfig.model_validate(meta["eval"])
    if meta["argmax"]:
        cfg = cfg.model_copy(update={"scales": (1.0,), "flip": False})
    model = OnnxSegmentor(path, meta, threads)
    metrics = evaluate_split(model, dataset, split or cfg.split, cfg, Runtime(torch.device("cpu")),
                             meta["normalization"]["mean"], meta["normalization"]["std"], on_batch=on_batch)
    return {"onnx": str(path), "checkpoint": meta["checkpoint"]["path"], "dataset": str(dataset.root),
            "scales": list(cfg.scales), "flip": cfg.flip, **metrics}
