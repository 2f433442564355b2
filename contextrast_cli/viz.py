"""Drawing for ``contextrast visualize-boundaries``: panels, legends and figures from plain arrays.

Nothing here imports torch or the training code: ``contextrast_cli.visualize`` computes what
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


def colour_table(palette, ignore_index: int = 255) -> np.ndarray:
    """(256, 3) uint8 RGB lookup: class id -> palette colour, anything else black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)
    table[ignore_index] = 0
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


def heat_panel(image, layer: LayerPicks) -> np.ndarray:
    """The layer's distance-to-boundary inside its error regions (viridis: dark = near)."""
    dist, error, top = layer.distance, layer.error, max_distance(layer) or 1.0
    level = np.clip(np.where(np.isfinite(dist), dist, top) / top, 0, 1) * 255  # inf: a region filling the layer
    heat = cv2.cvtColor(cv2.applyColorMap(level.astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    out, inside = _dim(image), _upsample(error.astype(np.uint8), image.shape[:2]).astype(bool)
    out[inside] = _upsample(heat, image.shape[:2])[inside]
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


def _scale(width: int) -> float:
    """Font scale for a panel ``width`` pixels wide (0.6 at CamVid's 480)."""
    return float(np.clip(width / 800, 0.35, 0.6))


def _bar(text: str, width: int, scale: float, bold: bool = False) -> np.ndarray:
    """A title bar: ``text`` in white on the background, shrunk to fit ``width``."""
    thickness = 2 if bold else 1
    height = int(round(34 * scale / 0.6))
    while scale > 0.3 and cv2.getTextSize(text, FONT, scale, thickness)[0][0] > width - 8:
        scale -= 0.05
    bar = np.full((height, width, 3), BACKGROUND, np.uint8)
    text_height = cv2.getTextSize(text, FONT, scale, thickness)[0][1]
    cv2.putText(bar, text, (4, (height + text_height) // 2), FONT, scale, WHITE, thickness, cv2.LINE_AA)
    return bar


def _row(panels: list[tuple[str, np.ndarray]], scale: float, gap: int = 4) -> np.ndarray:
    tiles = []
    for title, panel in panels:
        tiles += [np.vstack([_bar(title, panel.shape[1], scale), panel]),
                  np.full((panel.shape[0] + _bar("", 1, scale).shape[0], gap, 3), BACKGROUND, np.uint8)]
    return np.hstack(tiles[:-1])


def _zoom(panel: np.ndarray, factor: int) -> np.ndarray:
    return panel if factor == 1 else np.repeat(np.repeat(panel, factor, 0), factor, 1)


def compose(rows: list[list[tuple[str, np.ndarray]]], headers: list[str] | None = None,
            footer: list | None = None) -> np.ndarray:
    """Titled panels, row by row (each row optionally under a bold header), then a legend.

    Panels narrower than ``MIN_PANEL_WIDTH`` are enlarged by an integer factor (nearest) so
    the titles stay legible; CamVid-sized panels (480 wide) stay at native size.

    Args:
        rows: per row, (title, (H, W, 3) uint8 RGB panel) pairs.
        footer: ``legend`` arguments (lines, entry groups...), laid out at the figure's width.
    """
    zoom = max(1, MIN_PANEL_WIDTH // rows[0][0][1].shape[1])
    rows = [[(title, _zoom(panel, zoom)) for title, panel in row] for row in rows]
    scale = _scale(rows[0][0][1].shape[1])
    strips = [_row(row, scale) for row in rows]
    width = max(strip.shape[1] for strip in strips)
    blocks = []
    for index, strip in enumerate(strips):
        if headers:
            blocks.append(_bar(headers[index], width, scale, bold=True))
        blocks.append(np.pad(strip, ((0, 4), (0, width - strip.shape[1]), (0, 0)), constant_values=BACKGROUND[0]))
    if footer is not None:
        blocks.append(legend(width, scale, *footer))
    return np.vstack(blocks)


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width`` pixels wide."""
    lines = [""]
    for word in text.split(" "):
        joined = f"{lines[-1]} {word}".strip()
        if lines[-1] and cv2.getTextSize(joined, FONT, scale, 1)[0][0] > width:
            lines.append(word)
        else:
            lines[-1] = joined
    return lines


def legend(width: int, scale: float, lines: list[str], *groups: list[tuple]) -> np.ndarray:
    """Wrapped text lines, then each group of (rgb, text, marker or None) entries in columns."""
    blocks = [_bar(part, width, scale) for line in lines for part in _wrap(line, width - 8, scale)]
    blocks += [_entry_grid(entries, width, scale) for entries in groups if entries]
    return np.vstack(blocks)


def _entry_grid(entries: list[tuple], width: int, scale: float) -> np.ndarray:
    """Entries in as many columns as fit: a swatch (or a marker when given), then the text."""
    line_height, box = int(round(28 * scale / 0.6)), int(round(17 * scale / 0.6))
    column = max(cv2.getTextSize(text, FONT, scale, 1)[0][0] for _, text, _ in entries) + box + 24
    columns = max(1, width // column)
    out = np.full((-(-len(entries) // columns) * line_height + 6, width, 3), BACKGROUND, np.uint8)
    for index, (rgb, text, marker) in enumerate(entries):
        x, y, colour = (index % columns) * column + 6, (index // columns) * line_height + 4, tuple(map(int, rgb))
        if marker is None:
            cv2.rectangle(out, (x, y), (x + box, y + box), colour, -1)
            cv2.rectangle(out, (x, y), (x + box, y + box), WHITE, 1)
        else:
            cv2.drawMarker(out, (x + box // 2, y + box // 2), colour, marker, box, 1)
        cv2.putText(out, text, (x + box + 8, y + box), FONT, scale, WHITE, 1, cv2.LINE_AA)
    return out


# ----------------------------------------------------------------------------- figures

NO_LABEL_NOTE = "BANE needs ground truth to select negatives, so only the prediction is drawn"
NO_LABEL = f"no ground truth: {NO_LABEL_NOTE}"
MARKER_KEY = ("dots: BANE picks coloured by the anchor class they are pushed away from (= their wrong "
              "prediction); grey x (or pixel): random top-up, union over anchors; white: error outline")


@dataclass(frozen=True)
class Meta:
    """What a figure says about the checkpoint behind a prediction.

    Attributes:
        title: e.g. ``iteration 60``.
        table: ``colour_table`` of the dataset palette.
    """

    title: str
    classes: tuple[str, ...]
    table: np.ndarray
    ignore_index: int
    ratio: float
    max_negatives: int
    method: str

    def settings(self) -> list[str]:
        """Two legend lines: the checkpoint, then the BANE settings used."""
        return [f"{self.title}, trained with contrast.method {self.method}",
                f"BANE ratio K = {self.ratio:g} of each error region, per image here (training: per batch); "
                f"at most {self.max_negatives} negatives per anchor"]


def error_mask(pred: np.ndarray, label: np.ndarray, ignore_index: int) -> np.ndarray:
    """(H, W) bool: labelled pixels predicted as another class."""
    return (pred != label) & (label != ignore_index)


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


def _error_title(error: np.ndarray, label: np.ndarray, ignore_index: int) -> str:
    share = error.sum() / max(int((label != ignore_index).sum()), 1)
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
        return compose(rows, footer=([meta.title, NO_LABEL], _class_entries(meta, _present(meta, pred))))
    error = error_mask(pred, label, meta.ignore_index)
    panels = []
    for view in layers:
        h, w = view.error.shape
        heat_title = (f"L{view.layer} {h}x{w}: distance to error boundary (dark = near), "
                      f"max {max_distance(view):.1f}")
        panels += [(heat_title, heat_panel(image, view)),
                   (f"L{view.layer}: {view.bane_counts.sum()} BANE dots, {view.topup_counts.sum()} random top-up "
                    f"(summed over anchors)",
                    negatives_panel(_dim(image, 0.3), view, meta.table))]
    rows = [[(f"image: {name}", image), (pred_title, prediction_panel(image, pred, meta.table)),
             ("ground truth (black = ignore)", meta.table[label]),
             (_error_title(error, label, meta.ignore_index), errors_panel(image, pred, error, meta.table))]]
    rows += [panels[i:i + 4] for i in range(0, len(panels), 4)]
    lines = [*meta.settings(), MARKER_KEY, "per class: BANE picks / random top-up at each layer"]
    return compose(rows, footer=(lines, _class_entries(meta, _present(meta, pred, label, layers=layers), layers)))


def _layer_entries(layers: list[LayerPicks], counts: bool = True) -> list[tuple]:
    return [(WHITE, f"L{v.layer}" + (f": {v.bane_counts.sum()} BANE picks ({v.topup_counts.sum()} random, "
                                      f"not drawn)" if counts else " BANE picks"),
             LAYER_MARKERS[i % len(LAYER_MARKERS)]) for i, v in enumerate(layers)]


def draw_overlay(image, pred, label, layers: list[LayerPicks], meta: Meta, name: str) -> np.ndarray:
    """One compact panel: image, error boundaries and the BANE picks of every layer (one marker shape each)."""
    error = None if label is None else error_mask(pred, label, meta.ignore_index)
    title = f"{name}, {meta.title}: " + ("prediction boundaries" if label is None
                                         else "error boundaries + BANE picks")
    lines = [meta.title, NO_LABEL] if label is None else meta.settings()
    layer_entries = [] if label is None else _layer_entries(layers)
    return compose([[(title, overlay_panel(image, pred, error, layers, meta.table))]],
                   footer=(lines, layer_entries, _class_entries(meta, _present(meta, pred, label))))


def draw_rows(image, label, results: list[tuple[Meta, np.ndarray, list[LayerPicks]]], name: str,
              style: str = "grid") -> np.ndarray:
    """The same image under several checkpoints: one row each, headed by its iteration."""
    rows, headers, present = [], [], set()
    for meta, pred, layers in results:
        row = [(f"prediction: {name}", prediction_panel(image, pred, meta.table))]
        header = meta.title
        if label is None:
            row.append(("prediction boundaries", prediction_panel(image, pred, meta.table, boundaries=True)))
        else:
            error = error_mask(pred, label, meta.ignore_index)
            header += (f": {_error_title(error, label, meta.ignore_index).split(':')[0]}, "
                       f"{sum(int(v.bane_counts.sum()) for v in layers)} BANE picks")
            row.append((_error_title(error, label, meta.ignore_index),
                        errors_panel(image, pred, error, meta.table)))
            row += ([("error boundaries + BANE picks", overlay_panel(image, pred, error, layers, meta.table))]
                    if style == "overlay" else
                    [(f"L{v.layer}: {v.bane_counts.sum()} BANE, {v.topup_counts.sum()} random",
                      negatives_panel(_dim(image, 0.3), v, meta.table)) for v in layers])
        rows.append(row)
        headers.append(header)
        present |= _present(meta, pred, label)
    meta, _, layers = results[-1]
    lines = [NO_LABEL] if label is None else [meta.settings()[1], MARKER_KEY]
    entries = _layer_entries(layers, counts=False) if style == "overlay" and label is not None else []
    return compose(rows, headers, footer=(lines, entries, _class_entries(meta, present)))
