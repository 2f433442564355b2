"""Experiments over many runs: ``ablation`` (paired runs trained and evaluated alike, resumable)
and ``paired`` (means over seeds, paired differences with their t interval, per-class deltas,
the ablation's files).

May import: every room below cli (train, viz, export, evaluation, contrast, models, data,
runtime, config, errors).
"""
