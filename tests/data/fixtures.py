"""Tiny datasets written in each dataset's native layout, with its real id conventions.

Every writer takes a ``labels`` function ``(split, index) -> raw label array`` (the ids as the
dataset stores them) so a test can put exactly the values it wants to check into a file; the
default draws blocks of valid raw ids, enough to train a few steps on.
"""

from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat

from contextrast_cli.config.classes import CITYSCAPES_LABEL_IDS, COCO_STUFF_UNUSED, PASCAL_CONTEXT_459_IDS

SIZE = (24, 32)


def image(seed: int, size=SIZE) -> np.ndarray:
    """A (H, W, 3) uint8 picture with some structure."""
    rng = np.random.default_rng(seed)
    return (rng.random((size[0] // 4, size[1] // 4, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)


def blocks(values, seed: int, size=SIZE) -> np.ndarray:
    """A (H, W) label of 4x8-pixel blocks drawn from ``values``."""
    rng = np.random.default_rng(seed)
    return np.asarray(values)[rng.integers(0, len(values), (size[0] // 4, size[1] // 8))].repeat(4, 0).repeat(8, 1)


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def cityscapes(root: Path, labels=None, counts=(2, 1, 1)) -> Path:
    """leftImg8bit/{train,val,test}/<city>/<stem>_leftImg8bit.png + gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png."""
    labels = labels or (lambda split, i: blocks([0, 1, *CITYSCAPES_LABEL_IDS], i))
    for split, count in zip(("train", "val", "test"), counts):
        for i in range(count):
            city = ("aachen", "bochum")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(i))
            if split != "test":
                write(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", labels(split, i).astype(np.uint8))
    return root


def ade20k(root: Path, labels=None, counts=(2, 1)) -> Path:
    """ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/{...}/*.png (0 = other)."""
    labels = labels or (lambda split, i: blocks(range(0, 151, 10), i))
    base = root / "ADEChallengeData2016"
    for split, count in zip(("training", "validation"), counts):
        for i in range(count):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write(base / "images" / split / f"{stem}.jpg", image(i))
            write(base / "annotations" / split / f"{stem}.png", labels(split, i).astype(np.uint8))
    return root


def pascal_context(root: Path, labels=None, counts=(2, 1), mat: bool = False) -> Path:
    """VOCdevkit/VOC2010/JPEGImages + SegmentationClassContext/*.png (0 = background, 1-59) and
    ImageSets/SegmentationContext lists; with ``mat``, the 459-class trainval/*.mat (LabelMap) and
    ImageSets/Main lists instead."""
    default = [0, *PASCAL_CONTEXT_459_IDS[::6], 1, 3] if mat else range(0, 60, 5)
    labels = labels or (lambda split, i: blocks(default, i))
    base = root / "VOCdevkit" / "VOC2010"
    lists = base / "ImageSets" / ("Main" if mat else "SegmentationContext")
    lists.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "val"), counts):
        ids = [f"2008_{split[0]}{i:05d}" for i in range(count)]
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for index, name in enumerate(ids):
            write(base / "JPEGImages" / f"{name}.jpg", image(index))
            if mat:
                (base / "trainval").mkdir(exist_ok=True)
                savemat(base / "trainval" / f"{name}.mat", {"LabelMap": labels(split, index).astype(np.uint16)})
            else:
                write(base / "SegmentationClassContext" / f"{name}.png", labels(split, index).astype(np.uint8))
    return root


USED_COCO = [i for i in range(182) if i not in COCO_STUFF_UNUSED]


def coco_stuff_164k(root: Path, labels=None, counts=(2, 1)) -> Path:
    """images/{train2017,val2017}/*.jpg + stuffthingmaps_trainval2017/{...}/*.png (0-based ids, 255 unlabelled)."""
    labels = labels or (lambda split, i: blocks([255, *USED_COCO[::12]], i))
    for split, count in zip(("train2017", "val2017"), counts):
        for i in range(count):
            stem = f"{i:012d}"
            write(root / "images" / split / f"{stem}.jpg", image(i))
            write(root / "stuffthingmaps_trainval2017" / split / f"{stem}.png", labels(split, i).astype(np.uint8))
    return root


def coco_stuff_10k(root: Path, labels=None, counts=(2, 1)) -> Path:
    """images/*.jpg + annotations/*.mat (S, 1-based ids, 0 unlabelled) + imageLists/{train,test}.txt."""
    labels = labels or (lambda split, i: blocks([0, *[u + 1 for u in USED_COCO[::12]]], i))
    (root / "imageLists").mkdir(parents=True)
    for split, count in zip(("train", "test"), counts):
        names = [f"COCO_{split}2014_{i:012d}" for i in range(count)]
        (root / "imageLists" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for i, name in enumerate(names):
            write(root / "images" / f"{name}.jpg", image(i))
            (root / "annotations").mkdir(exist_ok=True)
            savemat(root / "annotations" / f"{name}.mat", {"S": labels(split, i).astype(np.uint8)})
    return root


FOLDER_CLASSES = "background 0,0,0\ntraffic light 250,170,30\nroad 128,64,128\n# a comment\n\ncar 0,0,142\n"


def folder(root: Path, count: int = 4, colour: bool = False) -> Path:
    """images/*.png, labels/*.png (index masks, or RGB colour-coded ones) and classes.txt (4 classes)."""
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(FOLDER_CLASSES)
    palette = np.array([(0, 0, 0), (250, 170, 30), (128, 64, 128), (0, 0, 142)], np.uint8)
    for i in range(count):
        write(root / "images" / f"photo {i}.png", image(i))
        ids = blocks(range(4), i)
        label = cv2.cvtColor(palette[ids], cv2.COLOR_RGB2BGR) if colour else ids.astype(np.uint8)
        write(root / "labels" / f"photo {i}.png", label)
    return root


def camvid(root: Path, labels=None, counts=(2, 1)) -> Path:
    """The SegNet layout: {train,val}/*.png + {train,val}annot/*.png (11 = void)."""
    labels = labels or (lambda split, i: blocks(range(12), i))
    for split, count in zip(("train", "val"), counts):
        for i in range(count):
            write(root / split / f"0001TP_{i:06d}.png", image(i))
            write(root / f"{split}annot" / f"0001TP_{i:06d}.png", labels(split, i).astype(np.uint8))
    return root
