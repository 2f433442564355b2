"""Files of an evaluation, written atomically: prediction label PNGs (train ids) and colour PNGs in the
dataset's palette, and the per-class table ``per_class.csv``."""

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


PER_CLASS_COLUMNS = ("class", "IoU", "Acc", "boundary IoU", "boundary F", "pixel share")
"""``per_class.csv``'s header: the scores as fractions in [0, 1] (empty where undefined or not
measured); pixel share: the class's share of the split's labelled ground-truth pixels."""


def per_class_rows(metrics: dict) -> list[dict]:
    """One row per class of ``evaluate_split``'s metrics, keyed by ``PER_CLASS_COLUMNS``."""
    edges = metrics.get("boundary") or {}
    matrix = metrics["confusion"]["matrix"]
    pixels = [sum(row) for row in matrix]  # rows = ground truth
    total = sum(pixels)
    rows = []
    for index, name in enumerate(metrics["IoU"]):
        share = round(pixels[index] / total, 6) if total else None
        values = (name, metrics["IoU"][name], metrics["Acc"][name], edges.get("BIoU", {}).get(name),
                  edges.get("BF", {}).get(name), share)
        rows.append(dict(zip(PER_CLASS_COLUMNS, values)))
    return rows


def write_per_class_csv(metrics: dict, path: Path) -> Path:
    """``per_class.csv``: ``per_class_rows``, numbers written so that they read back exactly."""
    import csv
    import io

    text = io.StringIO()
    table = csv.DictWriter(text, PER_CLASS_COLUMNS, lineterminator="\n")
    table.writeheader()
    for row in per_class_rows(metrics):
        table.writerow({k: "" if v is None else v for k, v in row.items()})
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text.getvalue(), encoding="utf-8"))
