"""ADE20K (SceneParsing, 150 classes): ``ADEChallengeData2016/{images,annotations}/{training,validation}``;
label 0 (other) -> ignore, 1..150 -> train ids 0..149."""

from functools import partial
from pathlib import Path

from contextrast_cli.config.classes import ADE20K_CLASSES
from contextrast_cli.data.convert import LabelTable, Plan, images_in, pair_up, require_dir, shifted
from contextrast_cli.data.labels import read_index_label
from contextrast_cli.config.datasets import default_palette

FOLDER = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
TABLE = LabelTable(shifted(len(ADE20K_CLASSES)), "ADE20K labels (0 = other, 1-150)")


def plan_ade20k(source: Path) -> Plan:
    """The ADE20K pairs under ``source``: the ADEChallengeData2016 folder or the folder holding it.

    Raises:
        DataError: a missing sub-folder or label, named.
    """
    source = Path(source)
    root = source / FOLDER if (source / FOLDER).is_dir() else source
    splits = {}
    for split, name in SPLITS.items():
        images = require_dir(root / "images" / name, "ADE20K", f"the {name} images of {FOLDER}.zip")
        labels = require_dir(root / "annotations" / name, "ADE20K", f"the {name} annotations of {FOLDER}.zip")
        splits[split] = pair_up(images_in(images), partial(_label_of, labels), where=f" in {images}")
    return Plan("ade20k", ADE20K_CLASSES, default_palette(len(ADE20K_CLASSES)), splits,
                lambda path: TABLE(read_index_label(path), path),
                {"converter": "ade20k", "path": str(root.resolve()), "label_map": "0 -> 255, k -> k-1"})


def _label_of(labels: Path, image: Path) -> Path:
    return labels / f"{image.stem}.png"
