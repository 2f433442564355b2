"""The accuracy gate of a derived graph (int8, float16): it and the float graph it came from are
scored by ``evaluation.evaluator.evaluate_split``, in one pass over the verification images,
under the sidecar's evaluation settings (``evaluation.onnx.onnx_eval_settings``: scales, flip,
whole or sliding-window) exactly as ``evaluate --onnx`` scores them. The gate refuses a graph that
loses more than ``max_miou_drop`` mIoU points. Latency is measured apart (``export.quantize``).
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from contextrast_cli.errors import ConfigError, VerificationError
from contextrast_cli.evaluation.inference import Segmenter

SCORES = ("mIoU", "aAcc", "mAcc", "IoU", "Acc")
"""What the gate records of each graph: the numbers ``evaluate --onnx`` reports under these keys."""


@dataclass(frozen=True)
class GateOptions:
    """Which images a derived graph is checked on and how much it may lose (``export`` options
    ``--verify-images``, ``--max-miou-drop``, ``--data-root``)."""

    split: str = "val"
    images: int | None = None  # None: the whole split
    max_miou_drop: float = 1.0  # mIoU points
    data_root: Path | None = None

    def __post_init__(self) -> None:
        if self.images is not None and self.images < 1:
            raise ConfigError(f"--verify-images {self.images}: give at least one image, or leave it out "
                              f"for the whole split")
        if self.max_miou_drop < 0:
            raise ConfigError(f"--max-miou-drop {self.max_miou_drop}: give a drop in mIoU points >= 0")


def score_pair(candidate: Segmenter, reference: Segmenter, meta: dict, dataset, options: GateOptions,
               name: str) -> dict:
    """``candidate`` (the derived graph, called ``name``) and ``reference`` (the float graph) scored
    in one ``evaluate_split`` pass over ``options.images`` images of ``options.split``, under the
    sidecar ``meta``'s evaluation settings (boundary metrics off: they do not enter the gate).

    Returns:
        ``split``, ``images``, ``eval`` (the settings), ``float`` and ``name`` (each: ``SCORES``),
        ``miou_drop`` (points) and ``pixel_agreement``.
    """
    from contextrast_cli.evaluation.evaluator import evaluate_split
    from contextrast_cli.evaluation.onnx import onnx_eval_settings
    from contextrast_cli.runtime.device import Runtime

    cfg = onnx_eval_settings(meta, {"boundary": False})
    metrics = evaluate_split(candidate, dataset, options.split, cfg, Runtime(torch.device("cpu")),
                             images=options.images, reference=reference)
    ours, theirs = ({k: m[k] for k in SCORES} for m in (metrics, metrics["reference"]))
    return {"images": metrics["num_images"], "split": options.split, "eval": cfg.model_dump(mode="json"),
            "float": theirs, name: ours, "miou_drop": round((theirs["mIoU"] - ours["mIoU"]) * 100, 4),
            "pixel_agreement": metrics["pixel_agreement"]}


def refusal(report: dict, name: str, options: GateOptions, advice: str) -> VerificationError | None:
    """The one-line error of a graph that loses more than ``options.max_miou_drop``, else None."""
    if report["miou_drop"] <= options.max_miou_drop:
        return None
    return VerificationError(
        f"{name} loses {report['miou_drop']:.2f} mIoU points on {report['images']} {report['split']} images "
        f"({report['float']['mIoU'] * 100:.2f} -> {report[name]['mIoU'] * 100:.2f}; more than --max-miou-drop "
        f"{options.max_miou_drop:g}); nothing written; {advice}")
