"""Arranging panels: title bars, rows, the whole figure and its legend."""

import cv2
import numpy as np

from contextrast_cli.viz.panels import BACKGROUND, FONT, MIN_PANEL_WIDTH, WHITE


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
