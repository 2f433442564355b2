"""float16 graphs for GPUs (``export --half``): the verified float graph converted with
onnxruntime's ``convert_float_to_float16`` (weights and activations in float16, the input and
output kept float32 so that consumers feed and read the same tensors), then gated like int8
(``export.gate``): the float16 graph on onnxruntime's CUDA provider and the float graph on the
CPU are scored on the validation images under the sidecar's evaluation settings, and the float16
graph is kept only if it loses at most ``--max-miou-drop`` mIoU points. Where onnxruntime has no
CUDA provider (this project's CPU machines), the graph cannot be verified: nothing is written
unless verification is turned off. ``verify_half`` takes the providers, so that the gate runs on
a CPU too (tests).
"""

import json
from pathlib import Path

from contextrast_cli.errors import ExportError
from contextrast_cli.export.gate import GateOptions, refusal, score_pair

CUDA = ("CUDAExecutionProvider",)
"""Where ``half_graph`` runs the float16 graph it verifies."""


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


def half_graph(float_path: Path, verify: bool = True, gate: GateOptions | None = None) -> dict:
    """Write ``half_path(float_path)`` and its sidecar.

    Args:
        gate: the verification images and the largest mIoU drop (default: the whole val split, 1 point).

    Returns:
        ``{"path", "verification"}`` (verification: ``verify_half``'s report, None when turned off).

    Raises:
        ExportError: ``verify`` without a CUDA provider (nothing written). DataError: ``verify``
            without the dataset prepared.
        VerificationError: float16 loses more than ``gate.max_miou_drop`` (nothing written).
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
            verification = verify_half(float_path, target, meta, gate or GateOptions(), providers=CUDA)
        except Exception:
            target.unlink(missing_ok=True)
            raise
    sidecar = {**meta, "onnx": target.name, "precision": "float16 (input and output float32)",
               "half": {"float_graph": float_path.name, "verification": verification,
                        "verified": verification is not None}}
    atomic_write_text(Path(f"{target}.json"), json.dumps(sidecar, indent=2) + "\n")
    return {"path": target, "verification": verification}


def verify_half(float_path: Path, half_file: Path, meta: dict, gate: GateOptions,
                providers: tuple[str, ...]) -> dict:
    """The float graph (CPU) and the float16 graph (on ``providers``) scored by ``export.gate``.

    Returns:
        ``score_pair``'s report (``float`` and ``fp16`` scores, ``miou_drop``, ``pixel_agreement``)
        with ``providers``.

    Raises:
        DataError: the dataset is not prepared. VerificationError: a drop over ``gate.max_miou_drop``.
    """
    from contextrast_cli.evaluation.onnx import OnnxSegmentor, graph_dataset

    dataset = graph_dataset(float_path, meta, gate.data_root)
    reference, candidate = OnnxSegmentor(float_path, meta), OnnxSegmentor(half_file, meta, providers=providers)
    return {**half_gate(candidate, reference, meta, dataset, gate), "providers": list(providers)}


def half_gate(candidate, reference, meta: dict, dataset, gate: GateOptions) -> dict:
    """``score_pair`` of two graph runners (float16, float), refused over ``gate.max_miou_drop``.

    Raises:
        VerificationError: float16 loses more than ``gate.max_miou_drop`` mIoU points.
    """
    report = score_pair(candidate, reference, meta, dataset, gate, "fp16")
    if (error := refusal(report, "fp16", gate, "keep the float graph")) is not None:
        raise error
    return report

