"""``contextrast predict``: a trained network (checkpoint or exported ONNX graph) on a person's own
images and videos, through the evaluation's inference path (``evaluation.inference.predict_probs``).

Per image ``<out>/labels/<stem>.png`` (train ids), ``<out>/colour/<stem>.png`` (the palette) and,
with ``overlay``, ``<out>/overlay/<stem>.png`` (the colours blended over the image); per video
``<out>/<stem>_overlay.mp4``. Every file is written through a temporary name. An unreadable
input is reported and skipped; the others are still predicted.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contextrast_cli.config import EvalConfig
from contextrast_cli.errors import ContextrastError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclass
class Predictor:
    """A network ready to predict: a callable images -> ``{"out": logits}``, its settings and palette."""

    model: object
    eval: EvalConfig
    palette: list
    classes: list
    device: torch.device
    source: str


@dataclass
class PredictReport:
    """What a ``predict`` call produced: the files written and the inputs that failed (path, why)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    images: int = 0
    frames: int = 0


def collect_inputs(paths: Iterable[Path]) -> list[Path]:
    """Image and video files of ``paths`` (a folder: its images and videos, sorted, not recursive).

    Raises:
        DataError: a path that does not exist, or nothing to predict at all.
    """
    found = []
    wanted = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
            if not inside:
                raise DataError(f"{path}: no images or videos in this folder (looked for "
                                f"{', '.join(wanted)}); pass image files or a folder holding them")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not found:
        raise DataError("nothing to predict: pass image or video files, or folders holding them")
    return found


def load_predictor(checkpoint: Path | None, onnx: Path | None, device: str = "auto",
                   eval_overrides: dict | None = None) -> Predictor:
    """The network of a checkpoint (on ``device``) or of an exported graph (onnxruntime, CPU).

    Raises:
        CheckpointError / ExportError: unreadable model files. ConfigError: bad evaluation options.
    """
    from contextrast_cli.config import eval_settings

    overrides = eval_overrides or {}
    if onnx is not None:
        from contextrast_cli.evaluation.onnx import OnnxSegmentor
        from contextrast_cli.evaluation.onnx import read_sidecar

        meta = read_sidecar(onnx)
        settings = {**meta["eval"], **overrides}
        if meta["argmax"]:
            settings.update(scales=(1.0,), flip=False, mode="whole")
        return Predictor(OnnxSegmentor(Path(onnx), meta), eval_settings(settings), meta["dataset"]["palette"],
                         meta["dataset"]["classes"], torch.device("cpu"), str(onnx))
    from contextrast_cli.config import with_eval
    from contextrast_cli.models.checkpoint import config_from_checkpoint, load_checkpoint, model_from_checkpoint
    from contextrast_cli.runtime.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = with_eval(config_from_checkpoint(payload), overrides)
    runtime = setup_runtime(device, "fp32")
    model = model_from_checkpoint(payload).to(runtime.device).eval()
    return Predictor(model, cfg.eval, payload["dataset"]["palette"], payload["dataset"]["classes"],
                     runtime.device, str(checkpoint))


@torch.no_grad()
def predict_image(predictor: Predictor, rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 train ids of one (H, W, 3) uint8 RGB image."""
    from contextrast_cli.evaluation.inference import predict_probs

    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None].to(predictor.device)
    return predict_probs(predictor.model, x, predictor.eval).argmax(1)[0].to(torch.uint8).cpu().numpy()


def blend(rgb: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The prediction's colours over the image."""
    return (rgb.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).round().astype(np.uint8)


def predict_files(predictor: Predictor, inputs: list[Path], out_dir: Path, overlay: bool = False,
                  on_item: Callable[[Path], None] | None = None) -> PredictReport:
    """Predict every input; failures are collected, not raised."""
    from contextrast_cli.data.loading import read_rgb
    from contextrast_cli.evaluation.writers import PredictionWriter, colourize, write_png

    writer, report = PredictionWriter(out_dir, predictor.palette), PredictReport()
    for path in inputs:
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                report.written.append(predict_video(predictor, path, out_dir, report))
            else:
                rgb = read_rgb(path)
                pred = predict_image(predictor, rgb)
                writer.write(path.stem, pred)
                report.written += [out_dir / "labels" / f"{path.stem}.png", out_dir / "colour" / f"{path.stem}.png"]
                if overlay:
                    report.written.append(write_png(out_dir / "overlay" / f"{path.stem}.png",
                                                    blend(rgb, colourize(pred, predictor.palette))))
                report.images += 1
        except ContextrastError as exc:
            report.failed.append((path, str(exc)))
        if on_item:
            on_item(path)
    return report


def predict_video(predictor: Predictor, path: Path, out_dir: Path, report: PredictReport) -> Path:
    """``<out>/<stem>_overlay.mp4``: every frame with its prediction blended over it.

    Raises:
        DataError: OpenCV cannot open the video or write the result.
    """
    import cv2

    from contextrast_cli.atomic import atomic_write
    from contextrast_cli.evaluation.writers import colourize

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot read video (not a video OpenCV can decode)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    target = Path(out_dir) / f"{path.stem}_overlay.mp4"

    def write(tmp: Path) -> None:
        video, frames = None, 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                shown = blend(rgb, colourize(predict_image(predictor, rgb), predictor.palette))
                if video is None:
                    video = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                            (rgb.shape[1], rgb.shape[0]))
                    if not video.isOpened():
                        raise DataError(f"{target}: OpenCV cannot write an mp4 video here")
                video.write(cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
                frames += 1
        finally:
            capture.release()
            if video is not None:
                video.release()
        if frames == 0:
            raise DataError(f"{path}: the video has no frames OpenCV can decode")
        report.frames += frames

    return atomic_write(target, write, suffix=".tmp.mp4")
