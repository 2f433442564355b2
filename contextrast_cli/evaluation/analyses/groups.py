"""Head, mid and tail classes: the classes sorted by their training pixel count, most frequent
first (ties: the lower class index first), and cut into three groups of equal size; when the
class count is not a multiple of three the first groups hold one class more
(``numpy.array_split``: 11 classes -> 4 head, 4 mid, 3 tail). A group's IoU is the mean IoU of
its classes, over those whose IoU is defined."""

from collections.abc import Sequence

import numpy as np

GROUPS = ("head", "mid", "tail")


def class_groups(classes: Sequence[str], pixels: Sequence[int]) -> dict[str, list[str]]:
    """``{"head": [...], "mid": [...], "tail": [...]}`` of class names, each most frequent first.

    Args:
        pixels: (K,) training pixels of each class, in the order of ``classes``.
    """
    counts = np.asarray(pixels, np.int64)
    if counts.shape != (len(classes),):
        raise ValueError(f"{len(classes)} classes but {counts.size} pixel counts")
    order = np.argsort(-counts, kind="stable")  # descending, ties in class order
    return {name: [classes[i] for i in part] for name, part in zip(GROUPS, np.array_split(order, len(GROUPS)))}


def group_ious(iou: dict[str, float | None], groups: dict[str, list[str]]) -> dict[str, float | None]:
    """Mean IoU of each group's classes (None where none of them has a defined IoU)."""
    out = {}
    for name, members in groups.items():
        values = [iou[c] for c in members if iou.get(c) is not None]
        out[name] = round(sum(values) / len(values), 6) if values else None
    return out
