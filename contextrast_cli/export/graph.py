"""What is exported: the contrastive-free network wrapped as ``InferenceGraph``, the export
options, and the tensors the graph must hold."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from contextrast_cli.errors import ExportError

MIN_OPSET = 18
TRACE_MULTIPLE = 32  # HRNet's size divisor, see traced_size
BN_STATS = ("running_mean", "running_var")


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``height``/``width`` None: the checkpoint's ``data.crop_size``; ``settings``:
    ``--set eval.key=value`` laid over the checkpoint's config (the sidecar records the result)."""

    opset: int = MIN_OPSET
    height: int | None = None
    width: int | None = None
    dynamic: bool = True
    argmax: bool = False
    preprocessing: bool = False
    verify: bool = True
    settings: tuple[str, ...] = ()

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
    reference: dict | None = field(default=None)  # onnx.reference.ReferenceEvaluator vs onnxruntime


class InferenceGraph(nn.Module):
    """The exported function: [uint8 (B, H, W, 3) ->] RGB (B, 3, H, W) in [0, 1] -> logits [-> labels].

    The network normalises its input itself (``Segmentor.pixel_mean`` / ``pixel_std``).
    """

    def __init__(self, network: nn.Module, preprocessing: bool = False, argmax: bool = False) -> None:
        super().__init__()
        self.network = network
        self.preprocessing = preprocessing
        self.argmax = argmax

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = to_float(image) if self.preprocessing else image
        logits = self.network(x)["out"]  # (B, K, H, W)
        return logits.argmax(1) if self.argmax else logits


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], as the evaluation transform does."""
    return image.permute(0, 3, 1, 2).float() / 255


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
    from contextrast_cli.models.checkpoint import model_from_checkpoint

    network = model_from_checkpoint(payload)
    dropped = list(getattr(network, "training_only_modules", lambda: [])())
    training_only = sum(p.numel() for name in dropped for p in network.get_submodule(name).parameters())
    for name in dropped:
        parent, _, leaf = name.rpartition(".")
        delattr(network.get_submodule(parent), leaf)
    contrast = payload.get("contrast") or {}
    projection = sum(v.numel() for k, v in contrast.items()  # heads and fusion modules (a bank is no parameter)
                     if isinstance(v, torch.Tensor) and not k.endswith((*BN_STATS, "num_batches_tracked")))
    params = sum(p.numel() for p in network.parameters())
    stats = sum(b.numel() for k, b in network.named_buffers() if k.endswith(BN_STATS))
    return network, {"network": params, "training_only": training_only, "projection": projection,
                     "training_total": params + training_only + projection, "bn_statistics": stats}


def expected_tensors(network: nn.Module) -> dict[str, tuple[int, ...]]:
    """The tensors the exported graph must hold: parameters and BatchNorm running statistics."""
    return {k: tuple(v.shape) for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}


def traced_size(options: ExportOptions) -> tuple[int, int]:
    """The sample size traced: the export size, rounded up to a multiple of 32 (at least 64) when dynamic.

    torch.export cannot solve the shape constraints of HRNet's padding to a multiple
    of 32 when the sample itself needs padding (it fails on 45 x 77); traced at a
    multiple of 32, the symbolic graph is exact at every size (verified at odd ones).
    """
    if not options.dynamic:
        return options.size
    # at least two multiples: at one, the stride-32 maps have size 1, which torch.export specialises
    # (SegFormer's 8x8 key reduction on the stride-4 map makes such a 1, then refuses the dynamic dims)
    return tuple(max(2, -(-side // TRACE_MULTIPLE)) * TRACE_MULTIPLE for side in options.size)
