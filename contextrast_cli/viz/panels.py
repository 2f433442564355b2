"""Panels of ``contextrast visualize-boundaries`` from plain arrays (``viz.layout`` arranges them,
``viz.figures`` builds whole figures).

Nothing here imports torch: ``viz.bane_view`` computes what
BANE selects and hands it over as ``LayerPicks`` (numpy arrays). Marker semantics:

* ``select_negatives`` picks an error pixel p by BANE for one anchor only, the class it
  is wrongly predicted as (pred[p]); its marker is a filled dot in that anchor's palette
  colour at the centre of its layer cell, i.e. the image region that cell covers;
* random top-up negatives are drawn per anchor and one pixel may serve several anchors,
  so their union is drawn once as a grey cross and they are counted per anchor in the
  legend. The top-up uses a fixed generator seed, so the picture is reproducible.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from contextrast_cli.config.datasets import IGNORE_INDEX

MIN_PANEL_WIDTH = 320
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND, WHITE, TOPUP = (32, 32, 32), (255, 255, 255), (190, 190, 190)
LAYER_MARKERS = (cv2.MARKER_DIAMOND, cv2.MARKER_SQUARE, cv2.MARKER_TRIANGLE_UP, cv2.MARKER_STAR,
                 cv2.MARKER_TRIANGLE_DOWN, cv2.MARKER_CROSS)


@dataclass
class LayerPicks:
    """What BANE picked at one tapped layer for one image, as plain arrays.

    Attributes:
        layer: 1-based tap index.
        cell: (dy, dx) image pixels per layer cell.
        error: (h, w) bool error regions at the layer's size.
        distance: (h, w) float32 distance to the error region's boundary (inf outside errors).
        bane_points: (N, 2) int (x, y) image coordinates of the BANE picks' cell centres.
        bane_classes: (N,) the anchor each pick is pushed away from (= its predicted class).
        topup_points: (M, 2) int (x, y) of the union over anchors of the random top-up.
        bane_counts: (K,) BANE picks per anchor.
        topup_counts: (K,) random top-up picks per anchor.
    """

    layer: int
    cell: tuple[float, float]
    error: np.ndarray
    distance: np.ndarray
    bane_points: np.ndarray
    bane_classes: np.ndarray
    topup_points: np.ndarray
    bane_counts: np.ndarray
    topup_counts: np.ndarray


def colour_table(palette) -> np.ndarray:
    """(256, 3) uint8 RGB lookup: class id -> palette colour, anything else (ignore too) black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)
    table[IGNORE_INDEX] = 0
    return table


def _dim(image: np.ndarray, factor: float = 0.45) -> np.ndarray:
    grey = image.mean(2, keepdims=True) * factor
    return np.repeat(grey, 3, 2).astype(np.uint8)


def edges(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of a different id (both sides of a boundary)."""
    out = np.zeros(ids.shape, bool)
    across, down = ids[:, 1:] != ids[:, :-1], ids[1:] != ids[:-1]
    out[:, 1:] |= across
    out[:, :-1] |= across
    out[1:] |= down
    out[:-1] |= down
    return out


def _upsample(cells: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cells, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def prediction_panel(image, pred, table, boundaries: bool = False) -> np.ndarray:
    """The prediction blended over the image, or its class boundaries drawn on it."""
    if not boundaries:
        return (0.5 * image + 0.5 * table[pred]).astype(np.uint8)
    out, line = image.copy(), edges(pred)
    out[line] = table[pred][line]
    return out


def errors_panel(image, pred, error, table) -> np.ndarray:
    """Wrongly predicted pixels coloured by the class they are predicted as, on a dimmed image."""
    out = _dim(image)
    out[error] = table[pred][error]
    return out


def viridis(level: np.ndarray) -> np.ndarray:
    """(...) uint8 levels 0..255 -> (..., 3) uint8 RGB of OpenCV's viridis map."""
    flat = np.asarray(level, np.uint8).reshape(1, -1)
    return cv2.cvtColor(cv2.applyColorMap(flat, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB).reshape(*np.shape(level), 3)


def colour_bar_height(height: int) -> int:
    """Rows of the colour bar at the bottom of a heat panel ``height`` rows tall."""
    return max(2, height // 16)


def heat_panel(image, layer: LayerPicks) -> np.ndarray:
    """The layer's distance-to-boundary inside its error regions (viridis: dark = near), with a
    colour bar along the bottom edge: left end distance 0, right end ``max_distance`` (the figure's
    title gives the number), so a cell's colour sits on the bar at its distance."""
    dist, error, top = layer.distance, layer.error, max_distance(layer) or 1.0
    level = np.clip(np.where(np.isfinite(dist), dist, top) / top, 0, 1) * 255  # inf: a region filling the layer
    heat = viridis(level.astype(np.uint8))
    out, inside = _dim(image), _upsample(error.astype(np.uint8), image.shape[:2]).astype(bool)
    out[inside] = _upsample(heat, image.shape[:2])[inside]
    width = out.shape[1]
    out[-colour_bar_height(out.shape[0]):] = viridis(np.linspace(0, 255, width).astype(np.uint8))[None]
    return out


def max_distance(layer: LayerPicks) -> float:
    """The largest finite boundary distance inside the layer's error regions (0 without errors)."""
    finite = layer.distance[layer.error & np.isfinite(layer.distance)]
    return float(finite.max()) if finite.size else 0.0


def marker_radius(cell: tuple[float, float]) -> int:
    """Dot radius that keeps the dots of neighbouring cells apart."""
    return int(np.clip(min(cell) * 0.35, 1, 6))


def negatives_panel(background: np.ndarray, layer: LayerPicks, table: np.ndarray) -> np.ndarray:
    """The layer's error-region outlines, grey top-up crosses (single pixels on cells under 6 px),
    then BANE dots in anchor colours (white-ringed where the cells leave room)."""
    out = background.copy()
    out[edges(_upsample(layer.error.astype(np.uint8), out.shape[:2]))] = WHITE
    radius, cross = marker_radius(layer.cell), int(np.clip(min(layer.cell) * 0.6, 3, 9))
    if min(layer.cell) < 6:
        out[layer.topup_points[:, 1], layer.topup_points[:, 0]] = TOPUP
    else:
        for x, y in layer.topup_points.tolist():
            cv2.drawMarker(out, (x, y), TOPUP, cv2.MARKER_TILTED_CROSS, cross, 1)
    for (x, y), anchor in zip(layer.bane_points.tolist(), layer.bane_classes.tolist()):
        if radius >= 2:
            cv2.circle(out, (x, y), radius + 1, WHITE, -1, cv2.LINE_8)
        cv2.circle(out, (x, y), radius, table[anchor].tolist(), -1, cv2.LINE_8)
    return out


def overlay_panel(image, pred, error, layers: list[LayerPicks], table) -> np.ndarray:
    """Image, error boundaries (class colour inside, black outside) and every layer's BANE picks."""
    if error is None:
        return prediction_panel(image, pred, table, boundaries=True)
    out = image.copy()
    line = edges(np.where(error, pred, -1))
    out[line & ~error] = 0
    out[line & error] = table[pred][line & error]
    for index, layer in reversed(list(enumerate(layers))):  # deep layers' big markers below shallow ones
        size = int(np.clip(min(layer.cell) * 0.8, 5, 14))
        for (x, y), anchor in zip(layer.bane_points.tolist(), layer.bane_classes.tolist()):
            cv2.drawMarker(out, (x, y), table[anchor].tolist(), LAYER_MARKERS[index % len(LAYER_MARKERS)],
                           size, 2 if size >= 10 else 1)
    return out
