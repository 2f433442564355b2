"""The contrastive losses: CCL anchors and the pixel-anchor loss, BANE sampling, the exact
distance transform, the projection heads, the pixel-contrast baseline, and ``criterion``
(config -> loss object). ``contextrast_cli.api`` publishes the library surface built on this.

May import: config, errors (never data, models, runtime or anything above).
"""
