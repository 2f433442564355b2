"""Verification of an exported graph: onnxruntime against PyTorch in float64."""

import copy
from pathlib import Path

import torch

from contextrast_cli.errors import VerificationError
from contextrast_cli.evaluation.onnx import open_session
from contextrast_cli.export.graph import ExportOptions, InferenceGraph, to_float

MAX_ABS_DIFF = 1e-3
MIN_AGREEMENT = 0.999


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
        images = to_float(pixels)
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
