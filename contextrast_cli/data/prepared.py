"""The prepared dataset layout, shared by every dataset.

    <root>/dataset.json                name, classes, palette, ignore index, splits, ...
    <root>/<split>/images/<stem>.png|jpg
    <root>/<split>/labels/<stem>.png   uint8 train ids, 255 = ignore

Writers build the whole folder under a temporary name and rename it into place.
"""

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from contextrast_cli.config.datasets import DATASETS, IGNORE_INDEX
from contextrast_cli.errors import DataError

DATASET_JSON = "dataset.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset as described by its ``dataset.json``."""

    root: Path
    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    splits: dict[str, int]
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Sample:
    """One image/label pair to write. ``image`` is a file to copy or an RGB array."""

    stem: str
    image: Path | np.ndarray
    label: np.ndarray | None  # (H, W) uint8 train ids, 255 = ignore; None: an unlabelled split


def resolve_root(dataset: str, root: Path | None) -> Path:
    """``root`` if given, else ``$CONTEXTRAST_DATA/<dataset>``, else ``data/<dataset>``."""
    if root is not None:
        return Path(root)
    base = os.environ.get("CONTEXTRAST_DATA")
    return Path(base) / dataset if base else Path("data") / dataset


def missing_data_message(dataset: str, root: Path) -> str:
    """One line: which folder was expected and the command that prepares it."""
    spec = DATASETS[dataset]
    how = f"prepare it with: contextrast prepare-data {spec.prepare_hint.format(root=root)}"
    return (f"{spec.title} data not found: expected a prepared dataset at {root} "
            f"(no {DATASET_JSON}); {how}, or point --data-root / CONTEXTRAST_DATA at it")


def read_prepared(root: Path, dataset: str | None = None) -> PreparedDataset:
    """Load ``dataset.json``; with ``dataset``, also check it is that dataset.

    Raises:
        DataError: missing or malformed description, or a different dataset.
    """
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        raise DataError(missing_data_message(dataset, Path(root)) if dataset
                        else f"{root} is not a prepared dataset (no {DATASET_JSON})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        prepared = PreparedDataset(
            root=Path(root), name=meta["name"], classes=tuple(meta["classes"]),
            palette=tuple(tuple(c) for c in meta["palette"]),
            ignore_index=int(meta["ignore_index"]), splits=dict(meta["splits"]), meta=meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: malformed dataset description ({exc!r}); "
                        f"re-run contextrast prepare-data with --force") from None
    if prepared.ignore_index != IGNORE_INDEX:
        raise DataError(f"{path}: ignore_index {prepared.ignore_index}, but the prepared layout marks unlabelled "
                        f"pixels {IGNORE_INDEX}; re-run contextrast prepare-data with --force")
    if dataset is not None and prepared.name != dataset:
        raise DataError(f"{path}: holds dataset {prepared.name!r} but the config asks for "
                        f"{dataset!r}; fix data.dataset or --data-root")
    return prepared


def list_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of a split, sorted by stem.

    Raises:
        DataError: the split folder is missing or an image has no label.
    """
    images_dir, labels_dir = Path(root) / split / "images", Path(root) / split / "labels"
    if not images_dir.is_dir():
        raise DataError(f"split {split!r} not found: expected {images_dir}")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(image, labels_dir / f"{image.stem}.png") for image in images]
    missing = [str(label) for _, label in pairs if not label.is_file()]
    if missing:
        raise DataError(f"{len(missing)} label(s) missing in {labels_dir}, e.g. {missing[0]}")
    if not pairs:
        raise DataError(f"split {split!r} at {images_dir} holds no images")
    return pairs


def write_prepared(
    out: Path,
    *,
    name: str,
    classes: tuple[str, ...],
    palette: tuple[tuple[int, int, int], ...],
    splits: dict[str, Iterable[Sample]],
    source: dict,
    force: bool = False,
    on_sample: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Write a prepared dataset atomically and return its description.

    Args:
        out: final folder; must not exist (or be empty) unless ``force``.
        splits: split name -> samples, consumed lazily.
        source: where the data came from, stored in ``dataset.json``.
        on_sample: called with the split name after each written sample.

    Raises:
        DataError: ``out`` exists and ``force`` is false.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(f"{out} already exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts, hist, unlabelled = {}, np.zeros(256, dtype=np.int64), set()
        for split, samples in splits.items():
            counts[split] = 0
            for sample in samples:
                label_hist = _write_sample(tmp / split, sample)
                if split == "train":
                    hist += label_hist
                if sample.label is None:
                    unlabelled.add(split)
                counts[split] += 1
                if on_sample:
                    on_sample(split)
        meta = _describe(name, classes, palette, counts, hist, source)
        if unlabelled:
            meta["unlabelled_splits"] = sorted(unlabelled)
        (tmp / DATASET_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_prepared(out)


def _write_sample(split_dir: Path, sample: Sample) -> np.ndarray:
    """Write one pair (or an unlabelled image); returns the label's 256-bin histogram."""
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    if isinstance(sample.image, Path):
        shutil.copyfile(sample.image, split_dir / "images" / f"{sample.stem}{sample.image.suffix.lower()}")
    else:
        _imwrite(split_dir / "images" / f"{sample.stem}.png", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
    if sample.label is None:
        return np.zeros(256, dtype=np.int64)
    (split_dir / "labels").mkdir(parents=True, exist_ok=True)
    _imwrite(split_dir / "labels" / f"{sample.stem}.png", sample.label)
    return np.bincount(sample.label.ravel(), minlength=256)


def _imwrite(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise DataError(f"could not write {path}; check the folder is writable and has space")


def _describe(name, classes, palette, counts, hist, source) -> dict:
    known = hist[: len(classes)]
    total = max(int(known.sum()), 1)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "classes": list(classes),
        "palette": [list(c) for c in palette],
        "ignore_index": IGNORE_INDEX,
        "splits": counts,
        "class_frequencies": {c: round(int(n) / total, 6) for c, n in zip(classes, known)},
        "class_pixels": {c: int(n) for c, n in zip(classes, known)},
        "ignored_fraction": round(int(hist[IGNORE_INDEX]) / max(int(hist.sum()), 1), 6),
        "source": source,
    }


def train_pixel_counts(dataset: PreparedDataset) -> tuple[np.ndarray, str | None]:
    """(K,) int64 labelled pixels of each class in the training split: ``class_pixels`` of
    ``dataset.json`` (written by ``prepare-data`` and the synthetic generator), or, for a dataset
    prepared before they were recorded, the train labels counted once here, with a note.

    Raises:
        DataError: no record and no train split to count.
    """
    stored = dataset.meta.get("class_pixels")
    if isinstance(stored, dict) and list(stored) == list(dataset.classes):
        return np.asarray([int(stored[name]) for name in dataset.classes], np.int64), None
    hist = np.zeros(256, np.int64)
    pairs = list_pairs(dataset.root, "train")
    for _, path in pairs:
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise DataError(f"{path}: not a readable single-channel label PNG; re-run prepare-data --force")
        hist += np.bincount(label.ravel(), minlength=256)
    return hist[: dataset.num_classes], (f"{dataset.root}/{DATASET_JSON} does not record the training split's "
                                         f"class pixels (prepared before they were); counted its {len(pairs)} "
                                         f"train labels instead (re-run prepare-data --force to store them)")


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an existing ``out`` only once ``tmp`` is complete."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
