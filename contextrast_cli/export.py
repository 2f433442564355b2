"""ONNX export of the contrastive-free inference network: adapt -> export -> verify.

Adapt: the plain segmentation network is rebuilt from the checkpoint alone
(``model_from_checkpoint``); the projection heads in ``payload["contrast"]`` are
never built, and submodules the network names as training-only
(``training_only_modules()``, empty for every registered network: OCRNet's
auxiliary head feeds its OCR block) are dropped. ``InferenceGraph`` wraps it:
optional uint8 NHWC preprocessing in front, optional argmax behind.

Exporter, chosen explicitly: ``torch.onnx.export(..., dynamo=True)``
(torch.export + onnxscript), the default and maintained exporter since torch
2.9; the TorchScript one (``dynamo=False``) is deprecated. It exports every
registered network with symbolic batch, height and width (DeepLabV3/V3+ with
bilinear resizes to symbolic sizes, HRNet/OCRNet with their padding to a
multiple of 32 and the crop back) and matches PyTorch to ~1e-5. Its costs and
quirks, handled here:

- slower to export: seconds for ResNet-18 networks, ~20 s for a small HRNet on
  one CPU thread (TorchScript: under 1 s);
- it writes opset 18 or newer only, and silently writes 18 when asked for less,
  so ``--opset`` is checked against 18..onnx's newest and the written one read back;
- a size-1 batch or a sample that HRNet must pad makes torch.export specialise
  or fail, so dynamic graphs are traced at batch 2 and at the export size
  rounded up to a multiple of 32 (``traced_size``), then verified at odd sizes.

The graph is traced with ``optimize=False`` first, so its initializers can be
checked name-for-name against the network's state dict (parameters + BatchNorm
running statistics; nothing else), then optimised (constant folding; each
BatchNorm folded into the convolution before it; onnxruntime does not fold the
unoptimised graph's BatchNorms, ~10% slower on HRNet).
"""

import hashlib
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from contextrast_cli import __version__
from contextrast_cli.atomic import atomic_write, atomic_write_text
from contextrast_cli.errors import ExportError, VerificationError, first_line

MIN_OPSET = 18
TRACE_MULTIPLE = 32  # HRNet's size divisor, see traced_size
BN_STATS = ("running_mean", "running_var")
SIDECAR_FORMAT = "contextrast-onnx"
NETWORK = "network."  # prefix of the network's tensors inside InferenceGraph


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``height``/``width`` None: the checkpoint's ``data.crop_size``."""

    opset: int = MIN_OPSET
    height: int | None = None
    width: int | None = None
    dynamic: bool = True
    argmax: bool = False
    preprocessing: bool = False
    verify: bool = True

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the traced sample and the first verification input."""
        if self.height is None or self.width is None:
            raise ValueError("ExportOptions.size before the crop size was filled in")
        return self.height, self.width


@dataclass
class ExportResult:
    """What ``export_checkpoint`` wrote and measured."""

    path: Path
    sidecar: Path
    checkpoint: Path
    counts: dict
    graph_tensors: dict[str, tuple[int, ...]]
    verification: list[dict] | None = field(default=None)


class InferenceGraph(nn.Module):
    """The exported function: [uint8 (B, H, W, 3) -> normalised (B, 3, H, W)] -> logits [-> labels].

    Args:
        mean, std: per-channel RGB statistics in [0, 1] units, as ``data.mean``/``data.std``.
    """

    def __init__(self, network: nn.Module, mean, std, preprocessing: bool = False, argmax: bool = False) -> None:
        super().__init__()
        self.network = network
        self.preprocessing = preprocessing
        self.argmax = argmax
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.normalize(image) if self.preprocessing else image
        logits = self.network(x)["out"]  # (B, K, H, W)
        return logits.argmax(1) if self.argmax else logits

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (B, H, W, 3) -> float (B, 3, H, W), as the evaluation transform does."""
        return (image.permute(0, 3, 1, 2).float() / 255 - self.mean) / self.std


def check_opset(opset: int) -> None:
    """ExportError unless the dynamo exporter can write ``opset``."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(f"--opset {opset}: the ONNX exporter (torch.onnx, dynamo) writes opsets "
                          f"{MIN_OPSET} to {newest} (onnx {onnx.__version__}); pick one in that range")


def inference_network(payload: dict) -> tuple[nn.Module, dict]:
    """The checkpoint's network without training-only parts, and the parameter counts.

    Returns:
        (network in eval mode, counts): ``network`` = exported parameters,
        ``training_only`` (auxiliary heads), ``projection`` (contrastive heads),
        ``training_total``, ``bn_statistics`` (running mean/var elements kept by
        the network, folded into convolutions by the exporter).
    """
    from contextrast_cli.engine.checkpoint import model_from_checkpoint

    network = model_from_checkpoint(payload)
    dropped = list(getattr(network, "training_only_modules", lambda: [])())
    training_only = sum(p.numel() for name in dropped for p in network.get_submodule(name).parameters())
    for name in dropped:
        parent, _, leaf = name.rpartition(".")
        delattr(network.get_submodule(parent), leaf)
    contrast = payload.get("contrast") or {}
    projection = sum(v.numel() for k, v in contrast.items() if not k.endswith((*BN_STATS, "num_batches_tracked")))
    params = sum(p.numel() for p in network.parameters())
    stats = sum(b.numel() for k, b in network.named_buffers() if k.endswith(BN_STATS))
    return network, {"network": params, "training_only": training_only, "projection": projection,
                     "training_total": params + training_only + projection, "bn_statistics": stats}


def expected_tensors(network: nn.Module) -> dict[str, tuple[int, ...]]:
    """The tensors the exported graph must hold: parameters and BatchNorm running statistics."""
    return {k: tuple(v.shape) for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}


def traced_size(options: ExportOptions) -> tuple[int, int]:
    """The sample size traced: the export size, rounded up to a multiple of 32 when dynamic.

    torch.export cannot solve the shape constraints of HRNet's padding to a multiple
    of 32 when the sample itself needs padding (it fails on 45 x 77); traced at a
    multiple of 32, the symbolic graph is exact at every size (verified at odd ones).
    """
    if not options.dynamic:
        return options.size
    return tuple(-(-side // TRACE_MULTIPLE) * TRACE_MULTIPLE for side in options.size)


def trace(graph: InferenceGraph, options: ExportOptions):
    """``torch.onnx.export(dynamo=True, optimize=False)`` of ``graph`` at ``traced_size``.

    A batch of 2 is traced when dynamic (torch.export specialises a size-1 dim).
    """
    from torch.export import Dim

    batch, size = (2 if options.dynamic else 1), traced_size(options)
    shape = (batch, *size, 3) if options.preprocessing else (batch, 3, *size)
    sample = (torch.randint(0, 256, shape, dtype=torch.uint8) if options.preprocessing
              else torch.randn(shape))
    spatial = (1, 2) if options.preprocessing else (2, 3)
    dims = {0: Dim("batch"), spatial[0]: Dim("height"), spatial[1]: Dim("width")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(
                graph, (sample,), dynamo=True, optimize=False, verbose=False, opset_version=options.opset,
                input_names=["image"], output_names=["labels" if options.argmax else "logits"],
                dynamic_shapes={"image": dims} if options.dynamic else None)
        except Exception as exc:  # torch.export / onnxscript failures: one line, with the exporter named
            raise ExportError(f"torch.onnx.export (dynamo) failed: {first_line(exc)}; re-run with --debug") from exc


def check_graph_tensors(program, network: nn.Module) -> dict[str, tuple[int, ...]]:
    """The network tensors among the traced graph's initializers; ExportError unless exactly the network's."""
    found = {name[len(NETWORK):]: tuple(value.shape) for name, value in program.model.graph.initializers.items()
             if name.startswith(NETWORK)}
    expected = expected_tensors(network)
    if found != expected:
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(k for k in found if expected.get(k) != found[k])[:3]
        raise ExportError(f"the traced graph's tensors differ from the network's: missing {missing}, "
                          f"unexpected or reshaped {extra}")
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_checkpoint(checkpoint: Path, output: Path | None = None,
                      options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export a checkpoint's inference network to ONNX plus a ``FILE.json`` sidecar, both atomically.

    With ``options.verify`` the graph is checked (``onnx.checker`` full check,
    onnxruntime vs PyTorch) before it is renamed into place: a failure leaves nothing.

    Raises:
        CheckpointError: missing or foreign checkpoint. ExportError: bad opset, unwritable
        output, exporter failure. VerificationError: onnxruntime disagrees with PyTorch.
    """
    from contextrast_cli.engine.checkpoint import config_from_checkpoint, load_checkpoint

    check_opset(options.opset)
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():  # a run folder: its best.pt, else its last.pt
        checkpoint = next((checkpoint / n for n in ("best.pt", "last.pt") if (checkpoint / n).is_file()),
                          checkpoint / "best.pt")
    payload = load_checkpoint(checkpoint)
    digest = sha256(checkpoint)  # now, not after the export: a training run may replace the file
    output = Path(output) if output is not None else checkpoint.with_suffix(".onnx")
    check_writable(output)
    cfg = config_from_checkpoint(payload)
    options = replace(options, height=options.height or cfg.data.crop_size[0],
                      width=options.width or cfg.data.crop_size[1])
    network, counts = inference_network(payload)
    norm = payload["normalization"]
    graph = InferenceGraph(network, norm["mean"], norm["std"], options.preprocessing, options.argmax).eval()
    program = trace(graph, options)
    tensors = check_graph_tensors(program, network)
    program.optimize()
    result = ExportResult(output, Path(f"{output}.json"), checkpoint, counts, tensors)
    _write_atomically(output, lambda tmp: _save_and_check(program, tmp, graph, options, result))
    sidecar = build_sidecar(payload, cfg, result, options, digest)
    atomic_write_text(result.sidecar, json.dumps(sidecar, indent=2) + "\n")
    return result


def _save_and_check(program, tmp: Path, graph: InferenceGraph, options: ExportOptions,
                    result: ExportResult) -> None:
    """Save, check the opset and the model, count the initializers, verify (before the rename)."""
    import onnx

    program.save(tmp, external_data=False)
    model = onnx.load(str(tmp))
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != options.opset:
        raise ExportError(f"--opset {options.opset}: the exporter wrote opset {written}; use --opset {written}")
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"onnx.checker rejected the graph: {first_line(exc)}") from None
    sizes = [(t.name.startswith(NETWORK), torch.Size(t.dims).numel()) for t in model.graph.initializer
             if t.data_type == onnx.TensorProto.FLOAT]
    result.counts["initializer_elements"] = sum(n for ours, n in sizes if ours)  # folded network tensors
    result.counts["constant_elements"] = sum(n for ours, n in sizes if not ours)  # e.g. Resize scales
    if options.verify:
        from contextrast_cli.engine.onnx_eval import verify_graph

        result.verification = verify_graph(tmp, graph, options)


def check_writable(output: Path) -> None:
    """ExportError unless a file can be created in ``output``'s folder (checked before the slow export)."""
    import tempfile

    if output.is_dir():
        raise ExportError(f"--output {output} is a folder; give the ONNX file's name (e.g. {output / 'model.onnx'})")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}; pass --output in a writable folder") from None


def _write_atomically(output: Path, write) -> None:
    try:
        atomic_write(output, write)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None


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
        "format": SIDECAR_FORMAT, "format_version": 1, "onnx": result.path.name,
        "checkpoint": {"path": str(result.checkpoint.resolve()), "sha256": digest,
                       "iteration": payload.get("iteration")},
        "model": cfg.model.model_dump(mode="json"), "dataset": payload["dataset"],
        "normalization": {**payload["normalization"], "units": "RGB scaled to [0, 1]"},
        "preprocessing": options.preprocessing, "argmax": options.argmax, "dynamic": options.dynamic,
        "export_size": [height, width], "traced_size": list(traced_size(options)), "opset": options.opset,
        "input": {"name": "image", "dtype": "uint8" if options.preprocessing else "float32",
                  "layout": "NHWC" if options.preprocessing else "NCHW", "shape": in_shape,
                  "dynamic_axes": axes if options.dynamic else {},
                  "meaning": "RGB 0-255" if options.preprocessing else "RGB / 255, minus mean, over std"},
        "output": {"name": "labels" if options.argmax else "logits",
                   "dtype": "int64" if options.argmax else "float32",
                   "layout": "NHW" if options.argmax else "NCHW", "shape": out_shape,
                   "dynamic_axes": out_axes if options.dynamic else {}},
        "eval": cfg.eval.model_dump(mode="json"),
        "parameters": result.counts, "verification": result.verification,
        "exporter": "torch.onnx.export(dynamo=True), optimised with onnxscript",
        "versions": {"contextrast": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }
