"""Prediction files: label PNGs (train ids) and colour PNGs in the dataset's palette, written atomically."""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from contextrast_cli.atomic import atomic_write
from contextrast_cli.errors import DataError


def write_png(path: Path, image: np.ndarray) -> Path:
    """Encode (H, W) uint8 ids or (H, W, 3) uint8 RGB as PNG and write it atomically."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise DataError(f"{path}: could not encode the image as PNG")
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(data.tobytes()))


def colourize(pred: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) train ids -> (H, W, 3) uint8 RGB in ``palette`` (ids beyond it: black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[pred]


class PredictionWriter:
    """Writes ``<folder>/labels/<stem>.png`` (train ids, for submission servers and scripts) and
    ``<folder>/colour/<stem>.png`` (the palette, for looking at)."""

    def __init__(self, folder: Path, palette: Sequence[Sequence[int]]) -> None:
        self.folder, self.palette = Path(folder), palette

    def write(self, stem: str, pred: np.ndarray) -> None:
        """``pred``: (H, W) uint8 train ids."""
        write_png(self.folder / "labels" / f"{stem}.png", pred.astype(np.uint8))
        write_png(self.folder / "colour" / f"{stem}.png", colourize(pred, self.palette))
