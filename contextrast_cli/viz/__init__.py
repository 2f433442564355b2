"""What ``contextrast visualize-boundaries`` shows, computed and drawn, and the charts of runs and
ablations.

Owns: ``bane_view`` (BANE's maps and picks for one image, computed with the loss's own
``select_negatives``), ``boundaries`` (the command's library call: checkpoints -> figures),
and the drawing, which takes plain arrays and imports no torch: ``panels``, ``layout``,
``figures`` (the BANE figures), ``charts`` (training curves, ablation bars, confusion matrices),
``analysis_figures`` (``analyze``'s similarity curves, t-SNE maps, Grad-CAM grid), ``report`` (an
evaluation's ``per_class.csv`` and ``confusion.png``) and ``page`` (``report.html``: one
self-contained page of tables, sortable per-class tables and embedded figures).

May import: evaluation, contrast, models, data, runtime, config, errors, atomic (never train,
experiments, export or cli).
"""

from contextrast_cli.viz.figures import NO_LABEL_NOTE, Meta, draw_grid, draw_overlay, draw_rows
from contextrast_cli.viz.layout import compose, legend
from contextrast_cli.viz.panels import MIN_PANEL_WIDTH, LayerPicks, colour_table, negatives_panel

__all__ = ["MIN_PANEL_WIDTH", "NO_LABEL_NOTE", "LayerPicks", "Meta", "colour_table", "compose", "draw_grid",
           "draw_overlay", "draw_rows", "legend", "negatives_panel"]
