"""PASCAL-Context, 59 classes, from either of its two usual forms under a VOC2010 folder:

- the widely used converted PNGs: ``JPEGImages/<id>.jpg``, ``SegmentationClassContext/<id>.png``
  (0 = background -> ignore, 1..59 -> train ids 0..58) and
  ``ImageSets/SegmentationContext/{train,val}.txt``;
- the original 459-class release: ``trainval/<id>.mat`` (field ``LabelMap``), read with scipy;
  the 59 classes keep their ids, every other class and 0 are ignored; splits from
  ``ImageSets/SegmentationContext`` when present, else VOC2010's ``ImageSets/Main`` (4998 / 5105).
"""

from pathlib import Path

import numpy as np

from contextrast_cli.config.classes import PASCAL_CONTEXT_459_IDS, PASCAL_CONTEXT_CLASSES
from contextrast_cli.data.convert import LabelTable, Plan, listed, read_list, require_dir, shifted
from contextrast_cli.data.labels import read_index_label
from contextrast_cli.config.datasets import IGNORE_INDEX, default_palette
from contextrast_cli.errors import DataError

NAME = "PASCAL-Context"
PNG_TABLE = LabelTable(shifted(len(PASCAL_CONTEXT_CLASSES)), "PASCAL-Context labels (0 = background, 1-59)")
MAT_TABLE = LabelTable({**{i: IGNORE_INDEX for i in range(460)},
                        **{raw: train_id for train_id, raw in enumerate(PASCAL_CONTEXT_459_IDS)}},
                       "PASCAL-Context 459-class ids (0-459)")


def voc2010_root(source: Path) -> Path:
    """The VOC2010 folder: ``source`` itself, or inside it (``VOC2010``, ``VOCdevkit/VOC2010``)."""
    source = Path(source)
    for root in (source, source / "VOC2010", source / "VOCdevkit" / "VOC2010"):
        if (root / "JPEGImages").is_dir():
            return root
    raise DataError(f"{NAME} source is incomplete: expected {source / 'VOC2010' / 'JPEGImages'} (the VOC2010 "
                    f"images; --source may be VOC2010 itself, VOCdevkit, or the folder holding it)")


def plan_pascal_context(source: Path) -> Plan:
    """The PASCAL-Context pairs under ``source``.

    Raises:
        DataError: missing images, labels or split lists, named.
    """
    root = voc2010_root(source)
    pngs, mats = root / "SegmentationClassContext", _mat_folder(Path(source), root)
    if pngs.is_dir():
        lists, decode, form = root / "ImageSets" / "SegmentationContext", _read_png, "converted PNGs"
        label_of = lambda i: pngs / f"{i}.png"  # noqa: E731
    elif mats is not None:
        lists = root / "ImageSets" / "SegmentationContext"
        lists = lists if lists.is_dir() else root / "ImageSets" / "Main"
        decode, form, label_of = _read_mat, "459-class .mat release", lambda i: mats / f"{i}.mat"
    else:
        raise DataError(f"{NAME} source is incomplete: expected {pngs} (the converted label PNGs) or "
                        f"{root / 'trainval'} (the 459-class .mat files of trainval.tar.gz)")
    require_dir(lists, NAME, "the split lists train.txt and val.txt")
    splits = {split: listed(read_list(lists / f"{split}.txt", NAME), lambda i: root / "JPEGImages" / f"{i}.jpg",
                            label_of, lists / f"{split}.txt") for split in ("train", "val")}
    return Plan("pascal-context", PASCAL_CONTEXT_CLASSES, default_palette(len(PASCAL_CONTEXT_CLASSES)), splits,
                decode, {"converter": "pascal-context", "path": str(root.resolve()), "form": form,
                         "splits_from": str(lists)})


def _mat_folder(source: Path, root: Path) -> Path | None:
    for folder in (root / "trainval", source / "trainval", root.parent / "trainval"):
        if folder.is_dir() and any(folder.glob("*.mat")):
            return folder
    return None


def _read_png(path: Path) -> np.ndarray:
    return PNG_TABLE(read_index_label(path), path)


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        label = loadmat(str(path))["LabelMap"]
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise DataError(f"{path}: not a PASCAL-Context label file (a .mat with a LabelMap field): "
                        f"{type(exc).__name__}") from None
    return MAT_TABLE(np.asarray(label), path)
