"""Experiments over many runs: ``ablation`` (paired runs trained and evaluated alike, resumable)
and ``paired`` (means over seeds, paired differences with their t interval, per-class deltas,
the ablation's files); the analyses and report pages over runs: ``analyze`` (``contextrast
analyze``: ``analysis_run`` for a checkpoint, ``ablation_analysis`` for an ablation folder,
``analysis_tables`` for their tables) and ``pages`` / ``ablation_page`` (the sections of
``report.html``, which ``viz.page`` renders).

May import: every room below cli (train, viz, export, evaluation, contrast, models, data,
runtime, config, errors).
"""
