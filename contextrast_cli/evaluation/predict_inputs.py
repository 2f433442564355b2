"""What ``contextrast predict`` reads and the names its outputs take.

A folder given is searched recursively (symbolic links to folders are not followed; the output
folder is skipped when it lies inside), and each input found keeps its path relative to that
folder: ``photos/a/x.png`` given as ``photos`` is named ``a/x``, so its outputs are
``labels/a/x.png``, ``colour/a/x.png``, ``overlay/a/x.png`` (a video ``a/clip.mp4``:
``a/clip_overlay.mp4``). A file given directly is named by its file name alone. Inputs whose
names would share a stem in one output folder (``a/x.png`` and ``a/x.jpg``) keep their
extension: ``labels/a/x.png.png`` and ``labels/a/x.jpg.png``. The same file given twice is
predicted once. Two inputs whose outputs would still collide (``a/x.png`` and ``b/x.png`` given
as files, or folders ``a`` and ``b`` both holding ``x.png``) are refused before anything is
written: no output overwrites another.
"""

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from contextrast_cli.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclass(frozen=True)
class Input:
    """One file to predict and the name of its outputs (``a/x``: ``labels/a/x.png`` ...)."""

    path: Path
    name: PurePosixPath

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES

    @property
    def output(self) -> PurePosixPath:
        """Its first output, relative to the output folder (the others mirror it)."""
        if self.is_video:
            return self.name.with_name(f"{self.name.name}_overlay.mp4")
        return "labels" / self.name.with_name(f"{self.name.name}.png")


def search_folder(folder: Path, skip: Path | None = None) -> list[Path]:
    """The images and videos under ``folder``, sorted, folder by folder; ``skip`` (resolved) is left out."""
    wanted, found = IMAGE_SUFFIXES + VIDEO_SUFFIXES, []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if skip is None or Path(top, d).resolve() != skip)
        found += [Path(top, f) for f in sorted(files) if Path(f).suffix.lower() in wanted and Path(top, f).is_file()]
    return found


def collect_inputs(paths: Iterable[Path], out_dir: Path | None = None) -> list[Input]:
    """The images and videos of ``paths`` with their output names (see the module docstring).

    Raises:
        DataError: a path that does not exist, a folder with nothing to predict, nothing to
            predict at all, or two inputs whose outputs would collide.
    """
    skip = Path(out_dir).resolve() if out_dir is not None else None
    found, seen = [], set()
    for path in map(Path, paths):
        if path.is_dir():
            inside = search_folder(path, skip)
            if not inside:
                raise DataError(f"{path}: no images or videos in this folder or below it (looked for "
                                f"{', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}); pass image files or a folder "
                                f"holding them")
            entries = [(p, PurePosixPath(p.relative_to(path).as_posix())) for p in inside]
        elif path.is_file():
            entries = [(path, PurePosixPath(path.name))]
        else:
            raise DataError(f"{path}: no such file or folder")
        for file, relative in entries:
            if (key := file.resolve()) not in seen:
                seen.add(key)
                found.append((file, relative))
    if not found:
        raise DataError("nothing to predict: pass image or video files, or folders holding them")
    files, relatives = zip(*found)
    inputs = [Input(file, name) for file, name in zip(files, output_names(list(relatives)))]
    check_collisions(inputs)
    return inputs


def output_names(relatives: list[PurePosixPath]) -> list[PurePosixPath]:
    """Each relative path without its extension, or with it where names would otherwise repeat."""
    keep = [False] * len(relatives)
    while True:
        names = [r if k else r.with_suffix("") for r, k in zip(relatives, keep)]
        counts = Counter(names)
        grow = [i for i, name in enumerate(names) if counts[name] > 1 and not keep[i]]
        if not grow:
            return names
        for i in grow:
            keep[i] = True


def check_collisions(inputs: list[Input]) -> None:
    """Refuse inputs whose outputs would be the same file, or one a folder of another.

    Raises:
        DataError: naming both inputs and how to predict them apart.
    """
    fix = ("pass the folder holding both (outputs mirror the paths inside it) or predict them into "
           "different --out folders")
    owner: dict[PurePosixPath, Input] = {}
    for item in inputs:
        if item.output in owner:
            raise DataError(f"{owner[item.output].path} and {item.path} would both be written as "
                            f"{item.output}; {fix}")
        owner[item.output] = item
    for output, item in owner.items():
        for parent in output.parents:
            if parent in owner:
                raise DataError(f"{owner[parent].path} would be written as {parent} but {item.path} needs a "
                                f"folder of that name for {output}; {fix}")
