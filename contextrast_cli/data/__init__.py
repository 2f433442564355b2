"""Datasets: the prepared layout, the ``prepare-data`` converters (one module per dataset),
the one reader of label images (``labels``: palette, grey, 16-bit, colour), the synthetic
scenes, transforms, loaders and samplers, and ``locate`` (config -> prepared dataset).
Which datasets exist, their classes and palettes live in ``config.datasets``.

May import: config, errors, atomic (never contrast, models, runtime or anything above).
"""
