"""COCO-Stuff, 171 classes, either release (recognised from the layout of ``--source``):

- 164k: ``images/{train2017,val2017}/*.jpg`` + ``stuffthingmaps_trainval2017/{train2017,val2017}/*.png``
  with 0-based ids 0..181 (the 11 ids COCO never used are not allowed), 255 = unlabelled;
- 10k: ``images/*.jpg`` + ``annotations/*.mat`` (field ``S``, 1-based ids, 0 = unlabelled) +
  ``imageLists/{train,test}.txt``; its 9k train / 1k test lists become the train / val splits
  (the paper's 9k / 1k).

Both map to the same 171 train ids; an id outside the mapping is an error naming the file.
"""

from pathlib import Path

import numpy as np

from contextrast_cli.config.classes import COCO_STUFF_CLASSES, COCO_STUFF_IDS, COCO_STUFF_UNUSED
from contextrast_cli.data.convert import LabelTable, Plan, images_in, listed, pair_up, read_list, require_dir
from contextrast_cli.data.labels import read_index_label
from contextrast_cli.config.datasets import IGNORE_INDEX, default_palette
from contextrast_cli.errors import DataError

NAME = "COCO-Stuff"
MAPS = "stuffthingmaps_trainval2017"
USED = [i for i in range(COCO_STUFF_IDS) if i not in COCO_STUFF_UNUSED]  # 0-based id of each train id
TABLE_164K = LabelTable({**{raw: train_id for train_id, raw in enumerate(USED)}, IGNORE_INDEX: IGNORE_INDEX},
                        "COCO-Stuff 164k ids (0-181 without the 11 unused ones, 255 = unlabelled)")
TABLE_10K = LabelTable({0: IGNORE_INDEX, **{raw + 1: train_id for train_id, raw in enumerate(USED)}},
                       "COCO-Stuff 10k ids (0 = unlabelled, 1-182 without the 11 unused ones)")


def plan_coco_stuff(source: Path) -> Plan:
    """The COCO-Stuff pairs under ``source`` (164k or 10k layout).

    Raises:
        DataError: neither layout, or a missing sub-folder, list, image or label, named.
    """
    source = Path(source)
    palette = default_palette(len(COCO_STUFF_CLASSES))
    if (source / MAPS).is_dir() or (source / "images" / "train2017").is_dir():
        return Plan("coco-stuff", COCO_STUFF_CLASSES, palette, _splits_164k(source),
                    lambda path: TABLE_164K(read_index_label(path), path),
                    {"converter": "coco-stuff", "variant": "164k", "path": str(source.resolve())})
    if (source / "imageLists").is_dir():
        return Plan("coco-stuff", COCO_STUFF_CLASSES, palette, _splits_10k(source), _read_mat,
                    {"converter": "coco-stuff", "variant": "10k", "path": str(source.resolve()),
                     "splits": {"train": "imageLists/train.txt", "val": "imageLists/test.txt"}})
    raise DataError(f"{NAME} source is incomplete: expected {source / MAPS} and {source / 'images' / 'train2017'} "
                    f"(the 164k release) or {source / 'imageLists'} with images/ and annotations/ (the 10k release)")


def _splits_164k(source: Path) -> dict:
    splits = {}
    for split, name in (("train", "train2017"), ("val", "val2017")):
        images = require_dir(source / "images" / name, NAME, f"the {name} images of {name}.zip")
        maps = require_dir(source / MAPS / name, NAME, f"the {name} label maps of {MAPS}.zip")
        splits[split] = pair_up(images_in(images, "*.jpg"), lambda image, m=maps: m / f"{image.stem}.png",
                                where=f" in {images}")
    return splits


def _splits_10k(source: Path) -> dict:
    images = require_dir(source / "images", NAME, "the 10k images")
    annotations = require_dir(source / "annotations", NAME, "the 10k .mat annotations")
    return {split: listed(read_list(source / "imageLists" / f"{name}.txt", NAME),
                          lambda i: images / f"{i}.jpg", lambda i: annotations / f"{i}.mat",
                          source / "imageLists" / f"{name}.txt")
            for split, name in (("train", "train"), ("val", "test"))}


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        label = loadmat(str(path))["S"]
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise DataError(f"{path}: not a COCO-Stuff 10k annotation (a .mat with an S field): "
                        f"{type(exc).__name__}") from None
    return TABLE_10K(np.asarray(label), path)
