"""Converter for the SegNet CamVid folder (11 classes, 11 = void)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from contextrast_cli.data.prepared import IMAGE_SUFFIXES, PreparedDataset, Sample, write_prepared
from contextrast_cli.data.specs import CAMVID_CLASSES, CAMVID_PALETTE, IGNORE_INDEX
from contextrast_cli.errors import DataError

CAMVID_VOID = 11
SPLITS = {"train": "trainannot", "val": "valannot", "test": "testannot"}


def find_camvid_splits(source: Path) -> dict[str, list[tuple[Path, Path]]]:
    """(image, label) pairs per split present under ``source``.

    Raises:
        DataError: no split found, or an image without its label.
    """
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"CamVid source {source} is not a folder; pass the SegNet CamVid folder "
                        f"holding train/, trainannot/, val/, valannot/")
    found = {}
    for split, annot in SPLITS.items():
        images_dir = source / split
        if not images_dir.is_dir():
            continue
        images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        pairs = [(image, source / annot / f"{image.stem}.png") for image in images]
        missing = [label for _, label in pairs if not label.is_file()]
        if missing:
            raise DataError(f"{len(missing)} CamVid image(s) in {images_dir} have no label, "
                            f"e.g. {missing[0]} is missing")
        found[split] = pairs
    if "train" not in found:
        raise DataError(f"no CamVid train split in {source}: expected {source / 'train'} and "
                        f"{source / 'trainannot'}")
    return found


def convert_camvid(source: Path, out: Path, *, force: bool = False,
                   on_sample: Callable[[str], None] | None = None) -> PreparedDataset:
    """Convert the SegNet CamVid folder into the prepared layout (void 11 -> 255)."""
    splits = find_camvid_splits(source)
    return write_prepared(
        out, name="camvid", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE,
        splits={split: _samples(pairs) for split, pairs in splits.items()},
        source={"converter": "camvid", "path": str(Path(source).resolve()),
                "label_map": {str(CAMVID_VOID): IGNORE_INDEX}},
        force=force, on_sample=on_sample)


def _samples(pairs: list[tuple[Path, Path]]) -> Iterator[Sample]:
    for image_path, label_path in pairs:
        yield Sample(image_path.stem, image_path, _check_pair(image_path, label_path))


def _check_pair(image_path: Path, label_path: Path) -> np.ndarray:
    """The converted label of one pair after checking it against its image."""
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{image_path}: unreadable image; replace or remove the file")
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        raise DataError(f"{label_path}: expected a single-channel uint8 PNG label map")
    if image.shape[:2] != label.shape:
        raise DataError(f"{label_path}: size {label.shape[1]}x{label.shape[0]} differs from its "
                        f"image {image_path.name} ({image.shape[1]}x{image.shape[0]})")
    values = np.unique(label)
    unknown = values[(values > CAMVID_VOID) & (values != IGNORE_INDEX)]
    if unknown.size:
        raise DataError(f"{label_path}: label value(s) {unknown.tolist()} are not CamVid classes "
                        f"(0-10, 11 = void)")
    return np.where(label == CAMVID_VOID, IGNORE_INDEX, label).astype(np.uint8)
