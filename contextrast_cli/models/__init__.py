"""Segmentation networks: backbones with multi-scale taps, heads, the segmentor, the model
registry (config -> builder keywords), feature taps for other people's models, and the
self-describing checkpoint format (``checkpoint``: written by training, read by everything
after it). Importing the package registers every builder in ``registry.MODELS`` (the registry
never imports its members back).

May import: config, errors, atomic (never contrast, data, runtime or anything above).
"""

from contextrast_cli.models import deeplab, hrnet, ocrnet, segformer, upernet  # noqa: F401  (they register themselves)
