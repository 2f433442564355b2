"""Cityscapes (fine annotations): ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelIds.png``; the official labelId -> trainId mapping
(19 classes, every other id ignored). The test split has no public labels: images only."""

from functools import partial
from pathlib import Path

from contextrast_cli.config.classes import CITYSCAPES_LABEL_IDS, CITYSCAPES_MAX_LABEL_ID
from contextrast_cli.data.convert import Item, LabelTable, Plan, images_in, pair_up, require_dir
from contextrast_cli.data.labels import read_index_label
from contextrast_cli.config.datasets import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from contextrast_cli.errors import DataError

IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
# every labelId 0..33 and 255 (the license plate's -1 stored in a uint8 map) is known; 19 are trained
TABLE = LabelTable({**{i: IGNORE_INDEX for i in range(CITYSCAPES_MAX_LABEL_ID + 1)}, IGNORE_INDEX: IGNORE_INDEX,
                    **{label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_LABEL_IDS)}},
                   "Cityscapes labelIds (0-33)")


def plan_cityscapes(source: Path) -> Plan:
    """The Cityscapes pairs under ``source`` (the folder holding leftImg8bit/ and gtFine/).

    Raises:
        DataError: a missing sub-folder or label, named.
    """
    source = Path(source)
    images_root = require_dir(source / "leftImg8bit", "Cityscapes", "the images, leftImg8bit_trainvaltest.zip")
    labels_root = require_dir(source / "gtFine", "Cityscapes", "the fine labels, gtFine_trainvaltest.zip")
    splits = {}
    for split in ("train", "val", "test"):
        folder = images_root / split
        if split != "test":
            require_dir(folder, "Cityscapes", f"the {split} images, one folder per city")
        elif not folder.is_dir():
            continue
        images = [image for city in sorted(p for p in folder.iterdir() if p.is_dir())
                  for image in images_in(city, f"*{IMAGE_SUFFIX}")]
        if not images:
            raise DataError(f"Cityscapes source is incomplete: no *{IMAGE_SUFFIX} images in {folder}/<city>/")
        if split == "test":  # no public labels: prepared as images only
            splits[split] = [Item(_stem(image), image, None) for image in images]
        else:
            splits[split] = pair_up(images, partial(_label_of, labels_root / split), _stem, where=f" in {folder}")
    return Plan("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, splits,
                lambda path: TABLE(read_index_label(path), path),
                {"converter": "cityscapes", "path": str(source.resolve()), "labels": "gtFine labelIds",
                 "label_map": {str(k): v for k, v in zip(CITYSCAPES_LABEL_IDS, range(19))}})


def _stem(image: Path) -> str:
    return image.name[: -len(IMAGE_SUFFIX)]


def _label_of(labels: Path, image: Path) -> Path:
    return labels / image.parent.name / f"{_stem(image)}{LABEL_SUFFIX}"
