"""``contextrast visualize-boundaries``: what BANE selects for one image (the paper's figure 3).

Computing and drawing are separate. ``bane_view`` calls ``select_negatives`` exactly as
the loss does (the prediction and the labels resized by nearest neighbour to each tapped
layer's size) for a batch of one image and returns plain arrays; the ``*_panel`` and
``draw_*`` functions only paint those arrays.

In training BANE's fraction K is taken per anchor class over the whole batch; here the
batch is the one image, so it is per image. Marker semantics:

* ``select_negatives`` picks an error pixel p by BANE for one anchor only, the class it
  is wrongly predicted as (pred[p]); its marker is a filled dot in that anchor's palette
  colour at the centre of its layer cell, i.e. the image region that cell covers;
* random top-up negatives are drawn per anchor and one pixel may serve several anchors,
  so their union is drawn once as a grey cross and they are counted per anchor in the
  legend. The top-up uses a fixed generator seed, so the picture is reproducible.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from contextrast_cli.atomic import atomic_write
from contextrast_cli.contrast.loss import resize_labels
from contextrast_cli.contrast.sampling import NegativeSelection, select_negatives
from contextrast_cli.errors import ConfigError, DataError

SEED = 0
MIN_PANEL_WIDTH = 320
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND, WHITE, TOPUP = (32, 32, 32), (255, 255, 255), (190, 190, 190)
LAYER_MARKERS = (cv2.MARKER_DIAMOND, cv2.MARKER_SQUARE, cv2.MARKER_TRIANGLE_UP, cv2.MARKER_STAR,
                 cv2.MARKER_TRIANGLE_DOWN, cv2.MARKER_CROSS)


@dataclass
class LayerView:
    """What BANE picked at one tapped layer for one image.

    Attributes:
        layer: 1-based tap index.
        cell: (dy, dx) image pixels per layer cell.
        selection: the ``select_negatives`` output for B = 1 (its maps are (1, h, w)).
        bane_points: (N, 2) int (x, y) image coordinates of the BANE picks' cell centres.
        bane_classes: (N,) the anchor each pick is pushed away from (= its predicted class).
        topup_points: (M, 2) int (x, y) of the union over anchors of the random top-up.
        bane_counts: (K,) BANE picks per anchor.
        topup_counts: (K,) random top-up picks per anchor.
    """

    layer: int
    cell: tuple[float, float]
    selection: NegativeSelection
    bane_points: np.ndarray
    bane_classes: np.ndarray
    topup_points: np.ndarray
    bane_counts: np.ndarray
    topup_counts: np.ndarray


def bane_view(pred: torch.Tensor, label: torch.Tensor, layer_sizes: dict[int, tuple[int, int]],
              num_classes: int, max_negatives: int, ratio: float, ignore_index: int = 255,
              seed: int = SEED) -> list[LayerView]:
    """BANE maps and negatives of one image at each layer, as the loss computes them.

    Args:
        pred: (H, W) predicted class ids at image size.
        label: (H, W) ground truth, ``ignore_index`` ignored.
        layer_sizes: 1-based layer -> (h, w) of its tapped feature map.
        seed: seed of the top-up generator (a fresh one per layer).
    """
    views = []
    for layer, size in layer_sizes.items():
        labels = resize_labels(label[None], size)  # (1, h, w)
        small = resize_labels(pred[None], labels.shape[-2:])
        selection = select_negatives(small, labels, num_classes, max_negatives, ratio, ignore_index,
                                     torch.Generator().manual_seed(seed))
        views.append(_layer_view(layer, selection, tuple(pred.shape), tuple(size)))
    return views


def _layer_view(layer, selection: NegativeSelection, image_size, size) -> LayerView:
    cell = (image_size[0] / size[0], image_size[1] / size[1])
    anchors = torch.arange(selection.index.shape[0])[:, None].expand_as(selection.index)
    bane = selection.valid & selection.is_bane
    topup = selection.valid & ~selection.is_bane
    return LayerView(layer, cell, selection, cell_centres(selection.index[bane], size[1], cell),
                     anchors[bane].numpy(), cell_centres(selection.index[topup].unique(), size[1], cell),
                     bane.sum(1).numpy(), topup.sum(1).numpy())


def cell_centres(index: torch.Tensor, width: int, cell: tuple[float, float]) -> np.ndarray:
    """(N, 2) int (x, y): the image pixel at the centre of each flat layer-cell index."""
    y, x = (index // width).numpy(), (index % width).numpy()
    return np.stack([np.floor((x + 0.5) * cell[1]), np.floor((y + 0.5) * cell[0])], 1).astype(np.int64)


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, mean, std,
            device: torch.device) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Eval-mode prediction (H, W) on the CPU and the (h, w) of every tapped layer.

    Args:
        image: (H, W, 3) uint8 RGB, normalised here as the evaluator's transform does.
    """
    from contextrast_cli.engine.evaluator import predict_probs

    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    x = ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None].to(device)
    sizes = [tuple(f.shape[-2:]) for f in model.backbone(x)]
    return predict_probs(model, x).argmax(1)[0].cpu(), sizes


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; DataError naming the path and why it cannot be read."""
    path = Path(path)
    why = ("no such file" if not path.exists() else "a directory, not an image" if path.is_dir()
           else None)
    image = None if why else cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read image ({why or 'not an image OpenCV can decode'})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_checked_label(path: Path, image_path: Path, image_size: tuple[int, int],
                       num_classes: int, ignore_index: int) -> np.ndarray:
    """(H, W) uint8 train ids of ``image_path``; DataError on a size or class mismatch."""
    path = Path(path)
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        raise DataError(f"{path}: cannot read label (expected a single-channel 8-bit PNG of train ids)")
    if label.shape != tuple(image_size):
        raise DataError(f"{path}: label is {label.shape[0]}x{label.shape[1]} but image {image_path} "
                        f"is {image_size[0]}x{image_size[1]}")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        raise DataError(f"{path}: label values {bad.tolist()} are not classes of the checkpoint "
                        f"(0..{num_classes - 1}, {ignore_index} = ignore)")
    return label


def label_beside(image: Path) -> Path | None:
    """The label of an image inside a prepared dataset (``<split>/images/x.*`` -> ``<split>/labels/x.png``)."""
    from contextrast_cli.data.prepared import DATASET_JSON

    image = Path(image)
    label = image.parent.parent / "labels" / f"{image.stem}.png"
    inside = image.parent.name == "images" and (image.parent.parent.parent / DATASET_JSON).is_file()
    return label if inside and label.is_file() else None


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Encode ``rgb`` as PNG and write it atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: could not encode the figure as PNG")
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(data.tobytes()))


def parse_layers(text: str | None, taps: int, default) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), checked against the network's ``taps`` layers."""
    if text is None:
        layers = tuple(default)
    else:
        try:
            layers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError:
            raise ConfigError(f"--layers: expected comma-separated layer numbers such as 1,2,3,4, "
                              f"got {text!r}") from None
    bad = [layer for layer in layers if not 1 <= layer <= taps]
    if bad or not layers:
        raise ConfigError(f"--layers: {bad or 'none'} not tapped; the network taps layers 1..{taps}")
    return layers


# ----------------------------------------------------------------------------- drawing


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


def heat_panel(image, layer: LayerView) -> np.ndarray:
    """The layer's distance-to-boundary inside its error regions (viridis: dark = near)."""
    maps = layer.selection.maps
    dist, error, top = maps.distance[0].numpy(), maps.error[0].numpy(), max_distance(layer) or 1.0
    level = np.clip(np.where(np.isfinite(dist), dist, top) / top, 0, 1) * 255  # inf: a region filling the layer
    heat = cv2.cvtColor(cv2.applyColorMap(level.astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    out, inside = _dim(image), _upsample(error.astype(np.uint8), image.shape[:2]).astype(bool)
    out[inside] = _upsample(heat, image.shape[:2])[inside]
    return out


def max_distance(layer: LayerView) -> float:
    """The largest finite boundary distance inside the layer's error regions (0 without errors)."""
    maps = layer.selection.maps
    finite = maps.distance[maps.error & maps.distance.isfinite()]
    return float(finite.max()) if finite.numel() else 0.0


def marker_radius(cell: tuple[float, float]) -> int:
    """Dot radius that keeps the dots of neighbouring cells apart."""
    return int(np.clip(min(cell) * 0.35, 1, 6))


def negatives_panel(background: np.ndarray, layer: LayerView, table: np.ndarray) -> np.ndarray:
    """The layer's error-region outlines, grey top-up crosses (single pixels on cells under 6 px),
    then BANE dots in anchor colours (white-ringed where the cells leave room)."""
    out = background.copy()
    error = layer.selection.maps.error[0].numpy()
    out[edges(_upsample(error.astype(np.uint8), out.shape[:2]))] = WHITE
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


def overlay_panel(image, pred, error, layers: list[LayerView], table) -> np.ndarray:
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


def _class_entries(meta: Meta, present, layers: list[LayerView] = ()) -> list[tuple]:
    entries = []
    for index in sorted(present):
        counts = "  ".join(f"L{v.layer} {v.bane_counts[index]}/{v.topup_counts[index]}" for v in layers)
        entries.append((meta.table[index], f"{meta.classes[index]}  {counts}".rstrip(), None))
    return entries


def _present(meta: Meta, *maps, layers: list[LayerView] = ()) -> set[int]:
    ids = set().union(*(np.unique(m).tolist() for m in maps if m is not None))
    for view in layers:
        ids |= set(np.flatnonzero(view.bane_counts + view.topup_counts).tolist())
    return {i for i in ids if 0 <= i < len(meta.classes)}


def _error_title(error: np.ndarray, label: np.ndarray, ignore_index: int) -> str:
    share = error.sum() / max(int((label != ignore_index).sum()), 1)
    return f"errors {share:.1%}: coloured by predicted class"


def draw_grid(image, pred, label, layers: list[LayerView], meta: Meta, name: str) -> np.ndarray:
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
        h, w = view.selection.maps.error.shape[-2:]
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


def _layer_entries(layers: list[LayerView], counts: bool = True) -> list[tuple]:
    return [(WHITE, f"L{v.layer}" + (f": {v.bane_counts.sum()} BANE picks ({v.topup_counts.sum()} random, "
                                      f"not drawn)" if counts else " BANE picks"),
             LAYER_MARKERS[i % len(LAYER_MARKERS)]) for i, v in enumerate(layers)]


def draw_overlay(image, pred, label, layers: list[LayerView], meta: Meta, name: str) -> np.ndarray:
    """One compact panel: image, error boundaries and the BANE picks of every layer (one marker shape each)."""
    error = None if label is None else error_mask(pred, label, meta.ignore_index)
    title = f"{name}, {meta.title}: " + ("prediction boundaries" if label is None
                                         else "error boundaries + BANE picks")
    lines = [meta.title, NO_LABEL] if label is None else meta.settings()
    layer_entries = [] if label is None else _layer_entries(layers)
    return compose([[(title, overlay_panel(image, pred, error, layers, meta.table))]],
                   footer=(lines, layer_entries, _class_entries(meta, _present(meta, pred, label))))


def draw_rows(image, label, results: list[tuple[Meta, np.ndarray, list[LayerView]]], name: str,
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


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Loaded:
    """A checkpoint ready to predict: its network, figure metadata and chosen layers."""

    path: Path
    model: torch.nn.Module
    meta: Meta
    layers: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data: object  # the checkpoint config's data section, for --split


def load_for_visualize(path: Path, device: torch.device, layers: str | None = None,
                       ratio: float | None = None) -> Loaded:
    """Rebuild a checkpoint's network; BANE settings from its config unless overridden.

    Raises:
        CheckpointError: missing or unreadable checkpoint. ConfigError: a layer it does not tap.
    """
    from contextrast_cli.engine.checkpoint import config_from_checkpoint, load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(path)
    cfg, data = config_from_checkpoint(payload), payload["dataset"]
    model = model_from_checkpoint(payload).to(device)
    meta = Meta(f"iteration {payload.get('iteration', '?')}", tuple(data["classes"]),
                colour_table(data["palette"], data["ignore_index"]), data["ignore_index"],
                ratio or cfg.contrast.bane.ratio, cfg.contrast.max_negatives, cfg.contrast.method)
    return Loaded(Path(path), model, meta, parse_layers(layers, len(model.feature_strides), cfg.contrast.layers),
                  tuple(payload["normalization"]["mean"]), tuple(payload["normalization"]["std"]), cfg.data)


def gather_inputs(images: list[Path], label: Path | None, split: str | None, num: int,
                  data_root: Path | None, loaded: Loaded) -> list[tuple[Path, Path | None]]:
    """(image, label or None) pairs from paths (a prepared dataset's image finds its label) or a split."""
    from contextrast_cli.data.build import locate_dataset
    from contextrast_cli.data.prepared import list_pairs
    from contextrast_cli.engine.evaluator import check_classes

    if split is not None:
        if images or label:
            raise ConfigError("--split takes images and labels from the prepared dataset; drop IMAGE and --label")
        dataset = locate_dataset(loaded.data, data_root)
        check_classes(dataset, list(loaded.meta.classes), loaded.path)
        return list_pairs(dataset.root, split)[:num]
    if not images:
        raise ConfigError("nothing to draw: give IMAGE paths or --split SPLIT")
    if label is not None:
        if len(images) != 1:
            raise ConfigError(f"--label applies to a single IMAGE but {len(images)} images were given")
        return [(Path(images[0]), Path(label))]
    return [(Path(image), label_beside(image)) for image in images]


def figure(image: np.ndarray, label: np.ndarray | None, loaded: list[Loaded], device: torch.device,
           style: str, name: str) -> np.ndarray:
    """Predict with every checkpoint, compute the BANE views, draw the figure (RGB)."""
    results = []
    for item in loaded:
        pred, sizes = predict(item.model, image, item.mean, item.std, device)
        views = [] if label is None else bane_view(
            pred, torch.from_numpy(label.astype(np.int64)), {layer: sizes[layer - 1] for layer in item.layers},
            len(item.meta.classes), item.meta.max_negatives, item.meta.ratio, item.meta.ignore_index)
        results.append((item.meta, pred.numpy(), views))
    if len(results) > 1:
        return draw_rows(image, label, results, name, style)
    meta, pred, views = results[0]
    return (draw_grid if style == "grid" else draw_overlay)(image, pred, label, views, meta, name)


def visualize_images(images: list[Path], checkpoints: list[Path], *, label: Path | None = None,
                     split: str | None = None, num: int = 4, data_root: Path | None = None,
                     out_dir: Path | None = None, layers: str | None = None, ratio: float | None = None,
                     style: str = "grid", device: str = "auto") -> list[tuple[Path, str | None]]:
    """One PNG per image in ``out_dir`` (default: ``visualize/`` beside the last checkpoint).

    Returns:
        (written PNG, note or None) per image; the note says when BANE had no ground truth.

    Raises:
        CheckpointError, DataError, ConfigError: one line naming the bad input.
    """
    from contextrast_cli.engine.device import setup_runtime

    if style not in ("grid", "overlay"):
        raise ConfigError(f"--style: expected grid or overlay, got {style!r}")
    if ratio is not None and not 0 < ratio <= 1:
        raise ConfigError(f"--ratio: BANE's fraction K must be in (0, 1], got {ratio}")
    runtime = setup_runtime(device, amp=False)
    loaded = [load_for_visualize(path, runtime.device, layers, ratio) for path in checkpoints]
    for item in loaded[1:]:
        if item.meta.classes != loaded[0].meta.classes:
            raise ConfigError(f"{item.path} and {loaded[0].path} were trained on different classes")
    pairs = gather_inputs(images, label, split, num, data_root, loaded[0])
    out_dir = Path(out_dir) if out_dir else Path(checkpoints[-1]).parent / "visualize"
    suffix = ("_checkpoints" if len(loaded) > 1 else "") + ("_overlay" if style == "overlay" else "")
    written = []
    for image_path, label_path in pairs:
        image = read_image(image_path)
        truth = None if label_path is None else read_checked_label(
            label_path, image_path, image.shape[:2], len(loaded[0].meta.classes), loaded[0].meta.ignore_index)
        rgb = figure(image, truth, loaded, runtime.device, style, Path(image_path).name)
        note = None if truth is not None else f"{image_path}: no label found; {NO_LABEL_NOTE}"
        written.append((write_png(out_dir / f"{Path(image_path).stem}{suffix}.png", rgb), note))
    return written
