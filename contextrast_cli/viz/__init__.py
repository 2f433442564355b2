"""Drawing for ``contextrast visualize-boundaries``; nothing here imports torch or the training code."""

from contextrast_cli.viz.figures import NO_LABEL_NOTE, Meta, draw_grid, draw_overlay, draw_rows
from contextrast_cli.viz.layout import compose, legend
from contextrast_cli.viz.panels import MIN_PANEL_WIDTH, LayerPicks, colour_table, negatives_panel

__all__ = ["MIN_PANEL_WIDTH", "NO_LABEL_NOTE", "LayerPicks", "Meta", "colour_table", "compose", "draw_grid",
           "draw_overlay", "draw_rows", "legend", "negatives_panel"]
