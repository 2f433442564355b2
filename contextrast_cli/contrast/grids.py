"""Nearest-neighbour resizes of labels and predictions to the layers' sizes, read by index.

``F.interpolate(mode="nearest")`` reads source position floor(i * s), s = source / size (float32,
as ATen computes it). Reading those positions by index is exact for any id and never makes a float
copy at the source's size; the argmax of a prediction is taken only where a layer reads it. The
loss holds its layers stacked (every layer's (B, h, w) pixels one after the other, ``contrast.layout``),
so ``stacked_labels`` / ``stacked_predictions`` fetch all of them with one gather each.
"""

from functools import lru_cache

import numpy as np
import torch


def nearest_index(source: int, size: int, device=None) -> torch.Tensor | slice:
    """The source positions ``F.interpolate(mode="nearest")`` reads along one axis: floor(i * s)
    with s = source / size in float32, as ATen computes it; a slice (a view, no copy) when the
    ratio is a whole number, where that is exactly every s-th position. Made once per sizes."""
    if source % size == 0:
        return slice(None, None, source // size)
    return _nearest_positions(source, size, None if device is None else str(device))


@lru_cache(maxsize=64)
def _nearest_positions(source: int, size: int, device: str | None) -> torch.Tensor:
    scale = torch.tensor(source, dtype=torch.float32) / size
    return (torch.arange(size, dtype=torch.float32) * scale).floor().long().clamp_max(source - 1).to(device)


def resize_labels(labels: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour resize of (B, H, W) ids to (B, h, w): the pixels ``F.interpolate``'s
    nearest mode takes, read by index (exact for any id, no float copy at the input's size)."""
    return labels[(slice(None), *_grid(labels.shape[-2:], size, labels.device))]


def _grid(source, size, device) -> tuple:
    """The (rows, cols) index of a nearest resize from ``source`` to ``size`` (H, W), one indexing
    expression: slices where the ratio is whole, a broadcast pair of index tensors where both are not."""
    rows, cols = (nearest_index(n, m, device) for n, m in zip(source, size))
    return _broadcast(rows, cols)


def _broadcast(rows, cols) -> tuple:
    """(rows, cols) as one indexing expression: a pair of index tensors broadcast as an outer product."""
    if isinstance(rows, torch.Tensor) and isinstance(cols, torch.Tensor):
        rows = rows[:, None]
    return rows, cols


def predict_at(logits: torch.Tensor, size) -> torch.Tensor:
    """The prediction resized (nearest) to ``size``, ``resize_labels(logits.argmax(1), size)``: the
    argmax over classes at the nearest positions only (a strided view where the ratio is whole)."""
    with torch.no_grad():
        return logits[(slice(None), slice(None), *_grid(logits.shape[-2:], size, logits.device))].argmax(1)


Shapes = tuple[tuple[int, int, int], ...]


def stacked_labels(labels: torch.Tensor, shapes: Shapes) -> torch.Tensor:
    """(P,) ``resize_labels(labels, (h, w))`` of every layer of ``shapes`` (each (B, h, w)),
    flattened one after the other: one gather from the (B, H, W) ``labels``."""
    grid = _stack(tuple(labels.shape[-2:]), shapes, False, str(labels.device))
    return labels.reshape(-1)[grid.at]


def stacked_predictions(logits: torch.Tensor, shapes: Shapes) -> torch.Tensor:
    """(P,) ``predict_at(logits, (h, w))`` of every layer of ``shapes``, flattened one after the
    other: the argmax taken once, at the union of the rows and of the columns the layers read (the
    largest layer's own grid when the others' positions lie on it), then one gather."""
    grid = _stack(tuple(logits.shape[-2:]), shapes, True, str(logits.device))
    with torch.no_grad():
        return logits[(slice(None), slice(None), *grid.index)].argmax(1).view(-1)[grid.at]


class _Stack:
    """Where the stacked layers' pixels lie in a source map of size (H, W) resized nearest to each:
    ``index`` reads the grid of the rows and columns any layer needs (every position when not
    ``union``) out of (..., H, W); ``at`` (P,) finds each stacked pixel in that (B, R, C) grid.
    Built with NumPy, once per geometry (no operator of the training step)."""

    def __init__(self, source: tuple[int, int], shapes: Shapes, union: bool, device: str) -> None:
        axes = []
        for axis, length in enumerate(source):
            reads = [_positions(length, shape[1 + axis]) for shape in shapes]
            kept = np.unique(np.concatenate(reads)) if union else np.arange(length)
            lookup = np.full(length, -1, dtype=np.int64)
            lookup[kept] = np.arange(kept.size)
            axes.append((_as_slice(kept, length, device), kept.size, [lookup[r] for r in reads]))
        (rows, height, row_at), (cols, width, col_at) = axes
        self.index = _broadcast(rows, cols)
        at = [(np.arange(b)[:, None, None] * height + r[:, None]) * width + c
              for (b, _, _), r, c in zip(shapes, row_at, col_at)]
        self.at = torch.from_numpy(np.concatenate([a.reshape(-1) for a in at])).to(device)


def _positions(source: int, size: int) -> np.ndarray:
    """``nearest_index`` as explicit positions: floor(i * s), s = source / size in float32 (as ATen)."""
    scale = np.float32(source) / np.float32(size)
    return np.minimum(np.floor(np.arange(size, dtype=np.float32) * scale).astype(np.int64), source - 1)


def _as_slice(kept: np.ndarray, length: int, device: str) -> torch.Tensor | slice:
    """``kept`` positions as a slice (a view) when they are every n-th position from 0 on, else a tensor."""
    step = int(kept[1] - kept[0]) if kept.size > 1 else max(length, 1)
    if kept[0] == 0 and np.array_equal(kept, np.arange(0, length, step)):
        return slice(None, None, step)
    return torch.from_numpy(kept).to(device)


@lru_cache(maxsize=16)
def _stack(source: tuple[int, int], shapes: Shapes, union: bool, device: str) -> _Stack:
    """The ``_Stack`` of these sizes on ``device`` (made once, then reused)."""
    return _Stack(source, shapes, union, device)
