"""``contextrast predict``: a trained network (checkpoint or exported ONNX graph) on a person's own
images and videos, through the evaluation's inference path (``evaluation.inference.predict_probs``).

Per image ``<out>/labels/<name>.png`` (train ids), ``<out>/colour/<name>.png`` (the palette) and,
with ``overlay``, ``<out>/overlay/<name>.png`` (the colours blended over the image); per video
``<out>/<name>_overlay.mp4`` and, unless ``label_frames`` is off, each frame's train ids as
``<out>/labels/<name>_frames/<frame>.png`` (frames numbered from 0, six digits); ``<name>`` mirrors the input's path inside the folder given
(``evaluation.predict_inputs``). Images of one size and a video's frames are predicted
``batch_size`` at a time. Every file is written through a temporary name. An unreadable input is
reported and skipped; the others are still predicted.
"""

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contextrast_cli.config import EvalConfig
from contextrast_cli.errors import ContextrastError, DataError
from contextrast_cli.evaluation.predict_inputs import Input, collect_inputs  # noqa: F401  (what predict reads)

DEFAULT_FPS = 25.0
"""The frame rate of an overlay video whose input gives none that is usable."""


@dataclass
class Predictor:
    """A network ready to predict: a callable images -> ``{"out": logits}``, its settings and palette."""

    model: object
    eval: EvalConfig
    palette: list
    classes: list
    device: torch.device
    source: str
    amp_dtype: torch.dtype | None = None
    """Autocast dtype of the forward pass (``--amp`` on a GPU); None: float32."""


@dataclass
class PredictReport:
    """What a ``predict`` call produced: the files written, the inputs that failed (path, why) and
    notes (one line each, such as a video written at 25 fps because its own rate was unusable)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: int = 0
    frames: int = 0
    videos: int = 0
    label_frames: int = 0


def load_predictor(checkpoint: Path | None, onnx: Path | None, device: str = "auto",
                   eval_overrides: dict | None = None, settings: Sequence[str] = (), amp: bool = False) -> Predictor:
    """The network of a checkpoint (on ``device``; ``amp``: mixed precision on a GPU) or of an
    exported graph (onnxruntime, CPU), under its evaluation settings with ``settings`` (``--set
    eval.key=value``) and then ``eval_overrides`` laid over.

    Raises:
        CheckpointError / ExportError: unreadable model files. ConfigError: bad evaluation options.
    """
    overrides = eval_overrides or {}
    if onnx is not None:
        from contextrast_cli.evaluation.onnx import OnnxSegmentor, onnx_eval_settings, read_sidecar

        meta = read_sidecar(onnx)
        return Predictor(OnnxSegmentor(Path(onnx), meta), onnx_eval_settings(meta, overrides, settings),
                         meta["dataset"]["palette"], meta["dataset"]["classes"], torch.device("cpu"), str(onnx))
    from contextrast_cli.config import with_eval
    from contextrast_cli.models.checkpoint import config_from_checkpoint, load_checkpoint, model_from_checkpoint
    from contextrast_cli.runtime.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = with_eval(config_from_checkpoint(payload), overrides, settings)
    runtime = setup_runtime(device, "auto" if amp else "fp32")
    model = model_from_checkpoint(payload).to(runtime.device).eval()
    return Predictor(model, cfg.eval, payload["dataset"]["palette"], payload["dataset"]["classes"],
                     runtime.device, str(checkpoint), runtime.amp_dtype)


@torch.no_grad()
def predict_batch(predictor: Predictor, images: list[np.ndarray]) -> np.ndarray:
    """(B, H, W) uint8 train ids of B (H, W, 3) uint8 RGB images of one size, in one inference call."""
    from contextrast_cli.evaluation.inference import predict_probs

    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(predictor.device)
    amp = torch.autocast(predictor.device.type, dtype=predictor.amp_dtype) if predictor.amp_dtype else nullcontext()
    with amp:
        probs = predict_probs(predictor.model, x, predictor.eval)
    return probs.argmax(1).to(torch.uint8).cpu().numpy()


def predict_image(predictor: Predictor, rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 train ids of one (H, W, 3) uint8 RGB image."""
    return predict_batch(predictor, [rgb])[0]


def frame_rate(value) -> tuple[float, str | None]:
    """The frame rate to write a video at: the container's ``value`` when it is a finite positive
    number, else ``DEFAULT_FPS`` and a note (one line) saying so."""
    try:
        fps = float(value)
    except (TypeError, ValueError):
        fps = math.nan
    if math.isfinite(fps) and fps > 0:
        return fps, None
    given = "no frame rate" if value is None else f"frame rate {value!r}"
    return DEFAULT_FPS, (f"the video gives {given}, not a finite positive number; its overlay video is "
                         f"written at {DEFAULT_FPS:g} fps")


def blend(rgb: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The prediction's colours over the image."""
    return (rgb.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).round().astype(np.uint8)


def predict_files(predictor: Predictor, inputs: list[Input], out_dir: Path, overlay: bool = False,
                  batch_size: int = 8, on_item: Callable[[Path], None] | None = None,
                  label_frames: bool = True) -> PredictReport:
    """Predict every input (``collect_inputs``' list); failures are collected, not raised.

    Consecutive readable images of one size go through inference ``batch_size`` at a time, as do a
    video's frames; the labels are those of one image at a time.
    """
    from contextrast_cli.data.loading import read_rgb

    report, pending = PredictReport(), []
    done = on_item or (lambda _: None)
    for item in inputs:
        if item.is_video:
            write_images(predictor, pending, out_dir, overlay, report, done)
            try:
                report.written.append(predict_video(predictor, item, out_dir, report, batch_size, label_frames))
                report.videos += 1
            except ContextrastError as exc:
                report.failed.append((item.path, str(exc)))
            done(item.path)
            continue
        try:
            rgb = read_rgb(item.path)
        except ContextrastError as exc:
            report.failed.append((item.path, str(exc)))
            done(item.path)
            continue
        if pending and (len(pending) == batch_size or pending[0][1].shape != rgb.shape):
            write_images(predictor, pending, out_dir, overlay, report, done)
        pending.append((item, rgb))
    write_images(predictor, pending, out_dir, overlay, report, done)
    return report


def write_images(predictor: Predictor, pending: list[tuple[Input, np.ndarray]], out_dir: Path, overlay: bool,
                 report: PredictReport, done: Callable[[Path], None]) -> None:
    """Predict ``pending`` (images of one size) as one batch, write their files, and empty it."""
    try:
        preds = predict_batch(predictor, [rgb for _, rgb in pending]) if pending else []
    except ContextrastError as exc:  # bad evaluation settings: every image of the batch fails alike
        preds, report.failed = [], report.failed + [(item.path, str(exc)) for item, _ in pending]
        for item, _ in pending:
            done(item.path)
    for (item, rgb), pred in zip(pending, preds):
        try:
            report.written += write_image(predictor, item, rgb, pred, Path(out_dir), overlay)
            report.images += 1
        except ContextrastError as exc:
            report.failed.append((item.path, str(exc)))
        done(item.path)
    pending.clear()


def write_image(predictor: Predictor, item: Input, rgb: np.ndarray, pred: np.ndarray, out_dir: Path,
                overlay: bool) -> list[Path]:
    """Write one image's label, colour and (with ``overlay``) overlay PNGs; returns their paths."""
    from contextrast_cli.evaluation.writers import colourize, write_png

    png = item.name.with_name(f"{item.name.name}.png")
    colour = colourize(pred, predictor.palette)
    written = [write_png(out_dir / "labels" / png, pred), write_png(out_dir / "colour" / png, colour)]
    if overlay:
        written.append(write_png(out_dir / "overlay" / png, blend(rgb, colour)))
    return written


def read_frames(capture, batch_size: int):
    """Batches of up to ``batch_size`` RGB frames from an OpenCV capture, until it ends."""
    import cv2

    batch = []
    while True:
        ok, frame = capture.read()
        if ok:
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if batch and (not ok or len(batch) == batch_size):
            yield batch
            batch = []
        if not ok:
            return


def predict_video(predictor: Predictor, item: Input, out_dir: Path, report: PredictReport,
                  batch_size: int = 8, label_frames: bool = True) -> Path:
    """``<out>/<name>_overlay.mp4``: every frame with its prediction blended over it, at the
    container's frame rate (``frame_rate``; a note in ``report`` when it is unusable); with
    ``label_frames``, each frame's train ids as ``<out>/labels/<name>_frames/<frame>.png`` too
    (counted in ``report``).

    Raises:
        DataError: OpenCV cannot open the video or write the result.
    """
    import cv2

    from contextrast_cli.atomic import atomic_write
    from contextrast_cli.evaluation.writers import colourize, write_png

    path, target = item.path, Path(out_dir) / item.output
    frames_dir = Path(out_dir) / "labels" / item.name.with_name(f"{item.name.name}_frames")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot read video (not a video OpenCV can decode)")
    fps, note = frame_rate(capture.get(cv2.CAP_PROP_FPS))
    if note:
        report.notes.append(f"{path}: {note}")

    def write(tmp: Path) -> None:
        video, frames = None, 0
        try:
            for batch in read_frames(capture, batch_size):
                for rgb, pred in zip(batch, predict_batch(predictor, batch)):
                    if video is None:
                        video = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                (rgb.shape[1], rgb.shape[0]))
                        if not video.isOpened():
                            raise DataError(f"{target}: OpenCV cannot write an mp4 video here")
                    video.write(cv2.cvtColor(blend(rgb, colourize(pred, predictor.palette)), cv2.COLOR_RGB2BGR))
                    if label_frames:
                        report.written.append(write_png(frames_dir / f"{frames:06d}.png", pred))
                        report.label_frames += 1
                    frames += 1
        finally:
            capture.release()
            if video is not None:
                video.release()
        if frames == 0:
            raise DataError(f"{path}: the video has no frames OpenCV can decode")
        report.frames += frames

    return atomic_write(target, write, suffix=".tmp.mp4")
