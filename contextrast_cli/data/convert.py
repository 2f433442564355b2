"""What every dataset converter shares: a plan of the pairs found, label decoding through a lookup
table, the checks, and the writing (``prepared.write_prepared``: a temporary folder renamed into place).

A converter only finds its dataset's files and says how its labels become train ids; ``convert``
then validates every pair (label present, same size as its image, only known values) while it
writes. Any problem is a ``DataError`` naming the file (or the expected sub-path) and nothing is
left in ``--out``.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contextrast_cli.data.prepared import IMAGE_SUFFIXES, PreparedDataset, Sample, write_prepared
from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.errors import DataError


@dataclass(frozen=True)
class Item:
    """One image to convert and its raw label file (None in an unlabelled split)."""

    stem: str
    image: Path
    label: Path | None


@dataclass(frozen=True)
class Plan:
    """A dataset found at a source: its definition and every pair per split.

    Attributes:
        decode: raw label file -> (H, W) uint8 train ids, 255 = ignore (DataError naming the file).
        source: provenance written into ``dataset.json``.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    splits: dict[str, list[Item]]
    decode: Callable[[Path], np.ndarray]
    source: dict

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.splits.values())


def convert(plan: Plan, out: Path, *, force: bool = False,
            on_sample: Callable[[str], None] | None = None) -> PreparedDataset:
    """Validate and write every pair of ``plan`` into the prepared layout at ``out``."""
    return write_prepared(out, name=plan.name, classes=plan.classes, palette=plan.palette,
                          splits={split: _samples(plan, items) for split, items in plan.splits.items()},
                          source=plan.source, force=force, on_sample=on_sample)


def _samples(plan: Plan, items: list[Item]) -> Iterator[Sample]:
    for item in items:
        label = None
        if item.label is not None:
            label = plan.decode(item.label)
            check_size(item.image, label, item.label)
        yield Sample(item.stem, item.image, label)


def check_size(image_path: Path, label: np.ndarray, label_path: Path) -> None:
    """DataError unless the image (its header: no decoding) has the label's size."""
    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except (OSError, ValueError):
        raise DataError(f"{image_path}: unreadable image; replace or remove the file") from None
    if (height, width) != label.shape:
        raise DataError(f"{label_path}: size {label.shape[1]}x{label.shape[0]} differs from its image "
                        f"{image_path.name} ({width}x{height})")


class LabelTable:
    """Raw label values -> train ids through a lookup table; any other value is an error.

    Args:
        mapping: raw value -> train id (``IGNORE_INDEX`` for ignored values).
        known: how the message describes the valid raw values (``ADE20K labels 0-150``).
    """

    def __init__(self, mapping: dict[int, int], known: str) -> None:
        self.table = np.full(max(mapping) + 1, -1, dtype=np.int16)
        for raw, train_id in mapping.items():
            self.table[raw] = train_id
        self.known = known

    def __call__(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raw = raw.astype(np.int64)
        inside = (raw >= 0) & (raw < len(self.table))
        ids = np.where(inside, self.table[np.clip(raw, 0, len(self.table) - 1)], -1)
        if (ids < 0).any():
            bad = np.unique(raw[ids < 0])
            shown = ", ".join(map(str, bad[:8].tolist())) + (", ..." if bad.size > 8 else "")
            raise DataError(f"{path}: label value(s) {shown} are not {self.known}; is this the right dataset "
                            f"(or a corrupt file)?")
        return ids.astype(np.uint8)


def shifted(num_classes: int, zero: int = IGNORE_INDEX, keep: tuple[int, ...] = ()) -> dict[int, int]:
    """0 -> ``zero`` (ignore), k -> k - 1 for k = 1..num_classes, and each of ``keep`` to itself."""
    return {0: zero, **{k: k - 1 for k in range(1, num_classes + 1)}, **{k: k for k in keep}}


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """``path`` if it is a folder, else a DataError naming the expected sub-path."""
    if not Path(path).is_dir():
        raise DataError(f"{dataset} source is incomplete: expected {path} ({what})")
    return Path(path)


def images_in(folder: Path, pattern: str = "*") -> list[Path]:
    """The images directly in ``folder`` matching ``pattern``, sorted."""
    return sorted(p for p in Path(folder).glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def pair_up(images: list[Path], label_of: Callable[[Path], Path], stem_of: Callable[[Path], str] = lambda p: p.stem,
            where: str = "") -> list[Item]:
    """Items of ``images`` with their labels; DataError naming the first missing label file."""
    items = [Item(stem_of(image), image, label_of(image)) for image in images]
    missing = [item for item in items if not item.label.is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s){where} have no label: {missing[0].image.name} needs "
                        f"{missing[0].label}")
    return items


def read_list(path: Path, dataset: str) -> list[str]:
    """Image ids listed one per line in a split file (blank lines skipped)."""
    if not Path(path).is_file():
        raise DataError(f"{dataset} source is incomplete: expected the split list {path}")
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def listed(ids: list[str], image_of: Callable[[str], Path], label_of: Callable[[str], Path | None],
           split_file: Path) -> list[Item]:
    """Items for the ids of a split list; DataError naming the first id whose image or label is missing."""
    items = [Item(Path(i).name, image_of(i), label_of(i)) for i in ids]
    for item in items:
        for kind, path in (("image", item.image), ("label", item.label)):
            if path is not None and not path.is_file():
                raise DataError(f"{split_file} names {item.stem!r}, but its {kind} {path} does not exist")
    return items
