"""Segmentation networks. Importing the package registers every builder in ``registry.MODELS``
(the registry never imports its members back)."""

from contextrast_cli.models import deeplab, hrnet, ocrnet  # noqa: F401  (they register themselves)
