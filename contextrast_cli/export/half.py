"""float16 graphs for GPUs (``export --half``): the verified float graph converted with
onnxruntime's ``convert_float_to_float16`` (weights and activations in float16, the input and
output kept float32 so that consumers feed and read the same tensors), then verified against
the float graph on onnxruntime's CUDA provider. Where onnxruntime has no CUDA provider (this
project's CPU machines), the graph cannot be verified: nothing is written unless verification
is turned off.
"""

import json
from pathlib import Path

import numpy as np

from contextrast_cli.errors import ExportError, VerificationError

MIN_AGREEMENT = 0.99  # float16 argmax agreement with float32


def half_path(float_path: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx``."""
    return float_path.with_name(f"{float_path.stem}.fp16{float_path.suffix}")


def require_cuda() -> None:
    """ExportError (nothing is written) unless onnxruntime has its CUDA provider here."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ExportError(f"--half graphs are for GPUs and cannot be verified here: onnxruntime "
                          f"{ort.__version__} has no CUDA provider on this machine (providers: "
                          f"{', '.join(ort.get_available_providers())}); nothing written; export on a GPU machine "
                          f"with onnxruntime-gpu, or pass --no-verify to write it unverified")


def half_graph(float_path: Path, verify: bool = True) -> dict:
    """Write ``half_path(float_path)`` and its sidecar.

    Returns:
        ``{"path", "verification"}`` (verification None when turned off).

    Raises:
        ExportError: ``verify`` without a CUDA provider (nothing written).
        VerificationError: float16 disagrees with float32 beyond ``MIN_AGREEMENT``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from contextrast_cli.atomic import atomic_write, atomic_write_text
    from contextrast_cli.evaluation.onnx import read_sidecar

    if verify:
        require_cuda()
    float_path = Path(float_path)
    meta = read_sidecar(float_path)
    model = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    target = half_path(float_path)
    atomic_write(target, lambda tmp: onnx.save(model, str(tmp)))
    verification = None
    if verify:
        try:
            verification = compare_on_cuda(float_path, target, meta)
        except VerificationError:
            target.unlink(missing_ok=True)
            raise
    sidecar = {**meta, "onnx": target.name, "precision": "float16 (input and output float32)",
               "half": {"float_graph": float_path.name, "verification": verification,
                        "verified": verification is not None}}
    atomic_write_text(Path(f"{target}.json"), json.dumps(sidecar, indent=2) + "\n")
    return {"path": target, "verification": verification}


def compare_on_cuda(float_path: Path, half_file: Path, meta: dict) -> dict:
    """float32 (CPU) against float16 (CUDA) on random inputs at the export size."""
    import onnxruntime as ort

    height, width = meta["export_size"]
    rng = np.random.default_rng(0)
    shape = (1, height, width, 3) if meta["preprocessing"] else (1, 3, height, width)
    feed = rng.integers(0, 256, shape).astype(np.uint8) if meta["preprocessing"] else \
        rng.random(shape, dtype=np.float32)
    ref = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).run(None, {"image": feed})[0]
    got = ort.InferenceSession(str(half_file), providers=["CUDAExecutionProvider"]).run(None, {"image": feed})[0]
    if meta["argmax"]:
        agreement = float((ref == got).mean())
    else:
        agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    result = {"agreement": agreement, "max_abs_diff": None if meta["argmax"] else float(np.abs(ref - got).max()),
              "shape": list(shape)}
    if agreement < MIN_AGREEMENT:
        raise VerificationError(f"float16 graph agrees with float32 on {agreement:.2%} of pixels (< "
                                f"{MIN_AGREEMENT:.0%}); nothing written; keep the float graph")
    return result
