"""The user's own data: a folder of images, a folder of labels, a classes file.

Classes file: one class per line in train-id order, optionally followed by its colour ``R,G,B``
(``traffic light 250,170,30``; names may contain spaces); blank lines and ``#`` comments skipped.
Labels ``<labels>/<image stem><suffix>.png`` are either index maps (palette PNGs as PASCAL VOC,
labelme and CVAT write them, 8- or 16-bit grey; values = class ids, with ``ignore_index`` and
optionally ``reduce_zero_label``) or RGB colour-coded masks as annotation tools export them
(mapped through the classes' colours; ``ignore_color`` marks unlabelled pixels).
Splits come from split files, from ``<split>/`` sub-folders (hidden ones and ``__pycache__``
skipped), or from a seeded validation fraction.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contextrast_cli.data.convert import Item, Plan, images_in, listed, pair_up, read_list, require_dir
from contextrast_cli.data.labels import read_label_image
from contextrast_cli.config.datasets import IGNORE_INDEX, default_palette
from contextrast_cli.errors import ConfigError, DataError

COLOUR = re.compile(r"^(.*\S)\s+(\d{1,3}),(\d{1,3}),(\d{1,3})$")
NOT_SPLITS = ("__pycache__",)  # nor any hidden folder


@dataclass(frozen=True)
class FolderOptions:
    """How to read a folder dataset (the ``prepare-data folder`` options)."""

    images: Path
    labels: Path
    classes: Path
    split_files: dict[str, Path] | None = None
    val_fraction: float = 0.1
    seed: int = 0
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False
    ignore_color: tuple[int, int, int] | None = None
    label_suffix: str = ""


def read_classes(path: Path) -> tuple[tuple[str, ...], list[tuple[int, int, int] | None]]:
    """Class names and their colours (None where a line gives none).

    Raises:
        DataError: a missing or empty file, a class named twice, a bad colour (file and line named).
    """
    if not Path(path).is_file():
        raise DataError(f"classes file {path} does not exist")
    names, colours, seen = [], [], {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = COLOUR.match(line)
        name, colour = (match.group(1), tuple(int(v) for v in match.groups()[1:])) if match else (line, None)
        if colour is not None and max(colour) > 255:
            raise DataError(f"{path}:{number}: colour {','.join(map(str, colour))} of {name!r} is not R,G,B in 0-255")
        if name in seen:
            raise DataError(f"{path}:{number}: class {name!r} is named twice (first on line {seen[name]}); "
                            f"give each class one line")
        seen[name] = number
        names.append(name)
        colours.append(colour)
    if not names:
        raise DataError(f"{path}: no class names; write one class per line (optionally with its colour R,G,B)")
    if len(names) >= IGNORE_INDEX:
        raise DataError(f"{path}: {len(names)} classes; at most {IGNORE_INDEX - 1} fit the uint8 train ids")
    return tuple(names), colours


def plan_folder(options: FolderOptions) -> Plan:
    """The pairs and splits of a folder dataset.

    Raises:
        DataError: a bad classes file, a missing folder, image or label, named.
    """
    classes, colours = read_classes(options.classes)
    _check_ignore_index(classes, options)
    require_dir(options.images, "folder", "--images: the images")
    require_dir(options.labels, "folder", "--labels: the label PNGs")
    palette = tuple(c or d for c, d in zip(colours, default_palette(len(classes))))
    decoder = LabelDecoder(classes, colours, options)
    return Plan("folder", classes, palette, _splits(options), decoder,
                {"converter": "folder", "images": str(Path(options.images).resolve()),
                 "labels": str(Path(options.labels).resolve()), "classes_file": str(Path(options.classes).resolve()),
                 "reduce_zero_label": options.reduce_zero_label, "ignore_index": options.ignore_index})


def _check_ignore_index(classes: tuple[str, ...], options: FolderOptions) -> None:
    """ConfigError when --ignore-index is a stored class id: every pixel of that class would be ignored."""
    value, shift = options.ignore_index, int(options.reduce_zero_label)
    if not shift <= value < len(classes) + shift:
        return
    stored = (f"is how --reduce-zero-label stores class {classes[value - 1]!r} (class k as k+1)" if shift
              else f"is the id of class {classes[value]!r}")
    raise ConfigError(f"--ignore-index {value} {stored} of {options.classes}: it would erase that class; give the "
                      f"value your masks use for unlabelled pixels, outside {shift}-{len(classes) - 1 + shift} "
                      f"(default 255)")


def _splits(options: FolderOptions) -> dict[str, list[Item]]:
    images, labels, suffix = Path(options.images), Path(options.labels), options.label_suffix
    if options.split_files:
        return {split: listed(read_list(path, "folder"), lambda i: _image_of(images, i),
                              lambda i: labels / f"{Path(i).stem}{suffix}.png", path)
                for split, path in options.split_files.items()}
    subfolders, top = _split_folders(images), images_in(images)
    if subfolders and top:
        raise DataError(f"{images} holds both images ({len(top)}) and split sub-folders ({', '.join(subfolders)}); "
                        f"either move every image into a <split>/ sub-folder (labels alike) or keep them all at the "
                        f"top (splits from --split-file or --val-fraction) and remove the sub-folders")
    if subfolders:
        return {split: pair_up(images_in(images / split), lambda p, s=split: labels / s / f"{p.stem}{suffix}.png",
                               where=f" in {images / split}") for split in subfolders}
    items = pair_up(top, lambda p: labels / f"{p.stem}{suffix}.png", where=f" in {images}")
    if not items:
        raise DataError(f"no images (.png, .jpg, .jpeg) in {images}")
    return _draw_val(items, options.val_fraction, options.seed)


def _split_folders(images: Path) -> list[str]:
    """The sub-folders of ``images`` that are splits: not hidden (``.ipynb_checkpoints``, ``.git``), not
    ``__pycache__``."""
    return sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name not in NOT_SPLITS)


def _draw_val(items: list[Item], fraction: float, seed: int) -> dict[str, list[Item]]:
    """train / val: ``fraction`` of ``items`` (at least one, never all), drawn with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = min(max(round(fraction * len(items)), 1 if fraction > 0 else 0), len(items) - 1)
    val = set(order[:n_val].tolist())
    return {"train": [item for i, item in enumerate(items) if i not in val],
            "val": [item for i, item in enumerate(items) if i in val]}


def _image_of(images: Path, name: str) -> Path:
    """The image a split file names, by file name or by stem (any image suffix)."""
    direct = images / name
    if direct.is_file():
        return direct
    found = images_in(images, f"{Path(name).stem}.*")
    return found[0] if found else direct


class LabelDecoder:
    """Index (palette, 8- or 16-bit grey) or RGB colour-coded label PNG -> train ids (decided per
    file by its mode: a palette PNG is an index map, its colours are not read)."""

    def __init__(self, classes: tuple[str, ...], colours: list, options: FolderOptions) -> None:
        self.num_classes, self.options, self.classes_file = len(classes), options, options.classes
        self.colours = {_pack(c): i for i, c in enumerate(colours) if c is not None}
        self.complete = all(c is not None for c in colours)
        if len(self.colours) < sum(c is not None for c in colours):
            raise DataError(f"{options.classes}: two classes share a colour; colour-coded masks need one colour each")
        if options.ignore_color is not None:
            self.colours[_pack(options.ignore_color)] = IGNORE_INDEX

    def __call__(self, path: Path) -> np.ndarray:
        raw = read_label_image(path)
        if raw.ndim == 2:
            return self._index(raw.astype(np.int64), path)
        return self._colour(raw, path)

    def _index(self, raw: np.ndarray, path: Path) -> np.ndarray:
        ignore = raw == self.options.ignore_index
        if self.options.reduce_zero_label:
            ignore |= raw == 0
            raw = raw - 1
        bad = ~ignore & ((raw < 0) | (raw >= self.num_classes))
        if bad.any():
            values = np.unique(raw[bad] + int(self.options.reduce_zero_label))
            raise DataError(f"{path}: label value(s) {values[:8].tolist()} are not class ids of {self.classes_file} "
                            f"(0-{self.num_classes - 1 + int(self.options.reduce_zero_label)}, "
                            f"{self.options.ignore_index} = ignore)")
        return np.where(ignore, IGNORE_INDEX, raw).astype(np.uint8)

    def _colour(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        if not self.complete:
            raise DataError(f"{path} is a colour-coded mask, but {self.classes_file} does not give every class a "
                            f"colour; add R,G,B after each name")
        keys, inverse = np.unique(_pack(rgb.reshape(-1, 3).T), return_inverse=True)
        ids = np.array([self.colours.get(int(k), -1) for k in keys])
        if (ids < 0).any():
            colour = _unpack(int(keys[np.argmax(ids < 0)]))
            raise DataError(f"{path}: colour {colour} is not a class colour of {self.classes_file} (nor "
                            f"--ignore-color); add it to the classes file or fix the mask")
        return ids[inverse].reshape(rgb.shape[:2]).astype(np.uint8)


def _pack(rgb) -> np.ndarray | int:
    r, g, b = (np.asarray(c, dtype=np.int64) for c in rgb)
    packed = (r << 16) | (g << 8) | b
    return int(packed) if packed.ndim == 0 else packed


def _unpack(key: int) -> str:
    return f"{key >> 16},{(key >> 8) & 255},{key & 255}"
