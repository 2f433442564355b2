"""Whole figures for ``contextrast visualize-boundaries``: the grid, the overlay, one row per checkpoint."""

from dataclasses import dataclass

import numpy as np

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.viz.layout import compose
from contextrast_cli.viz.panels import (LAYER_MARKERS, WHITE, LayerPicks, _dim, errors_panel, heat_panel,
                                        max_distance, negatives_panel, overlay_panel, prediction_panel)

NO_LABEL_NOTE = "BANE needs ground truth to select negatives, so only the prediction is drawn"
NO_LABEL = f"no ground truth: {NO_LABEL_NOTE}"
MARKER_KEY = ("dots: BANE picks coloured by the anchor class they are pushed away from (= their wrong "
              "prediction); grey x (or pixel): random top-up, union over anchors; white: error outline")
OVERLAY_KEY = ("markers: BANE picks, one shape per layer, coloured by the anchor class they are pushed away from; "
               "lines: error boundaries (class colour inside the error, black outside); random top-up not drawn")
"""What the overlay panels show (no top-up crosses, no white outlines: those are the grid's)."""


@dataclass(frozen=True)
class Meta:
    """What a figure says about the checkpoint behind a prediction.

    Attributes:
        title: e.g. ``iteration 60``.
        table: ``colour_table`` of the dataset palette.
        run: the run the checkpoint comes from, e.g. ``camvid-lite/none-seed0``.
    """

    title: str
    classes: tuple[str, ...]
    table: np.ndarray
    ratio: float
    max_negatives: int
    method: str
    run: str = ""

    @property
    def label(self) -> str:
        """``<run> (<method>), iteration N``: tells apart two runs at the same iteration."""
        return f"{self.run} ({self.method}), {self.title}" if self.run else f"{self.method}, {self.title}"

    def settings(self) -> list[str]:
        """Two legend lines: the checkpoint, then the BANE settings used."""
        return [f"{self.label}: trained with contrast.method {self.method}",
                f"BANE ratio {self.ratio:g} of each error region, per image here (training: per batch); "
                f"at most {self.max_negatives} negatives per anchor"]


def error_mask(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(H, W) bool: labelled pixels predicted as another class."""
    return (pred != label) & (label != IGNORE_INDEX)


def _class_entries(meta: Meta, present, layers: list[LayerPicks] = ()) -> list[tuple]:
    entries = []
    for index in sorted(present):
        counts = "  ".join(f"L{v.layer} {v.bane_counts[index]}/{v.topup_counts[index]}" for v in layers)
        entries.append((meta.table[index], f"{meta.classes[index]}  {counts}".rstrip(), None))
    return entries


def _present(meta: Meta, *maps, layers: list[LayerPicks] = ()) -> set[int]:
    ids = set().union(*(np.unique(m).tolist() for m in maps if m is not None))
    for view in layers:
        ids |= set(np.flatnonzero(view.bane_counts + view.topup_counts).tolist())
    return {i for i in ids if 0 <= i < len(meta.classes)}


def _error_title(error: np.ndarray, label: np.ndarray) -> str:
    share = error.sum() / max(int((label != IGNORE_INDEX).sum()), 1)
    return f"errors {share:.1%}: coloured by predicted class"


def draw_grid(image, pred, label, layers: list[LayerPicks], meta: Meta, name: str) -> np.ndarray:
    """Image, prediction, ground truth, errors; per layer its distance heat-map and negatives; legend.

    Args:
        image: (H, W, 3) uint8 RGB. pred, label: (H, W) class ids (label may be None).
    """
    pred_title = f"prediction ({meta.title})"
    if label is None:
        rows = [[(f"image: {name}", image), (pred_title, prediction_panel(image, pred, meta.table)),
                 ("prediction boundaries", prediction_panel(image, pred, meta.table, boundaries=True))]]
        return compose(rows, footer=([meta.label, NO_LABEL], _class_entries(meta, _present(meta, pred))))
    error = error_mask(pred, label)
    panels = []
    for view in layers:
        h, w = view.error.shape
        heat_title = (f"L{view.layer} {h}x{w}: distance to error boundary; bar 0 (dark, near) to "
                      f"{max_distance(view):.1f} cells")
        panels += [(heat_title, heat_panel(image, view)),
                   (f"L{view.layer}: {view.bane_counts.sum()} BANE dots, {view.topup_counts.sum()} random top-up "
                    f"(summed over anchors)",
                    negatives_panel(_dim(image, 0.3), view, meta.table))]
    rows = [[(f"image: {name}", image), (pred_title, prediction_panel(image, pred, meta.table)),
             ("ground truth (black = ignore)", meta.table[label]),
             (_error_title(error, label), errors_panel(image, pred, error, meta.table))]]
    rows += [panels[i:i + 4] for i in range(0, len(panels), 4)]
    lines = [*meta.settings(), MARKER_KEY, "per class: BANE picks / random top-up at each layer"]
    return compose(rows, footer=(lines, _class_entries(meta, _present(meta, pred, label, layers=layers), layers)))


def _layer_entries(layers: list[LayerPicks], counts: bool = True) -> list[tuple]:
    return [(WHITE, f"L{v.layer}" + (f": {v.bane_counts.sum()} BANE picks ({v.topup_counts.sum()} random, "
                                      f"not drawn)" if counts else " BANE picks"),
             LAYER_MARKERS[i % len(LAYER_MARKERS)]) for i, v in enumerate(layers)]


def draw_overlay(image, pred, label, layers: list[LayerPicks], meta: Meta, name: str) -> np.ndarray:
    """One compact panel: image, error boundaries and the BANE picks of every layer (one marker shape each)."""
    error = None if label is None else error_mask(pred, label)
    title = f"{name}, {meta.title}: " + ("prediction boundaries" if label is None
                                         else "error boundaries + BANE picks")
    lines = [meta.title, NO_LABEL] if label is None else [*meta.settings(), OVERLAY_KEY]
    layer_entries = [] if label is None else _layer_entries(layers)
    return compose([[(title, overlay_panel(image, pred, error, layers, meta.table))]],
                   footer=(lines, layer_entries, _class_entries(meta, _present(meta, pred, label))))


def draw_rows(image, label, results: list[tuple[Meta, np.ndarray, list[LayerPicks]]], name: str,
              style: str = "grid") -> np.ndarray:
    """The same image under several checkpoints: one row each, headed by its run, method and iteration."""
    rows, headers, present = [], [], set()
    for meta, pred, layers in results:
        row = [(f"prediction: {name}", prediction_panel(image, pred, meta.table))]
        header = meta.label
        if label is None:
            row.append(("prediction boundaries", prediction_panel(image, pred, meta.table, boundaries=True)))
        else:
            error = error_mask(pred, label)
            header += (f": {_error_title(error, label).split(':')[0]}, "
                       f"{sum(int(v.bane_counts.sum()) for v in layers)} BANE picks")
            row.append((_error_title(error, label),
                        errors_panel(image, pred, error, meta.table)))
            row += ([("error boundaries + BANE picks", overlay_panel(image, pred, error, layers, meta.table))]
                    if style == "overlay" else
                    [(f"L{v.layer}: {v.bane_counts.sum()} BANE, {v.topup_counts.sum()} random",
                      negatives_panel(_dim(image, 0.3), v, meta.table)) for v in layers])
        rows.append(row)
        headers.append(header)
        present |= _present(meta, pred, label)
    meta, _, layers = results[-1]
    lines = [NO_LABEL] if label is None else [meta.settings()[1], OVERLAY_KEY if style == "overlay" else MARKER_KEY]
    entries = _layer_entries(layers, counts=False) if style == "overlay" and label is not None else []
    return compose(rows, headers, footer=(lines, entries, _class_entries(meta, present)))
