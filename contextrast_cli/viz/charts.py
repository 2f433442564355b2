"""Plots with matplotlib (Agg, no screen): a run's training curves, an ablation's bar chart and
an evaluation's confusion matrix.

Each takes plain records (``metrics.jsonl`` lines, an ablation summary, a matrix of counts) and
writes a PNG atomically.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contextrast_cli.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _panel(ax, records: list[dict], keys: Sequence[str], title: str, ylabel: str = "") -> None:
    for key in keys:
        xs, ys = _series(records, key)
        if xs:
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def training_curves(records: list[dict], path: Path, title: str = "") -> Path:
    """``curves.png``: losses, learning rate, validation scores and the per-layer contrast
    diagnostics (anchor-positive / anchor-negative similarity, BANE and top-up negatives per
    anchor) over iterations, from a run's ``metrics.jsonl`` records."""
    plt = _pyplot()
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "mIoU" in r]
    keys = sorted({k for r in train for k in r})
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    _panel(axes[0, 0], train, [k for k in keys if k.startswith("loss")], "losses")
    _panel(axes[0, 1], train, ["lr"], "learning rate")
    val_rows = [{**r, "mBIoU": (r.get("boundary") or {}).get("mBIoU")} for r in val]
    _panel(axes[0, 2], val_rows, ["mIoU", "mBIoU"], f"validation ({val[-1]['split']})" if val else "validation")
    _panel(axes[1, 0], train, [k for k in keys if k.endswith("_sim")], "contrast: mean similarity to the anchor")
    _panel(axes[1, 1], train, [k for k in keys if k.endswith(("_bane", "_topup"))], "contrast: negatives per anchor")
    _panel(axes[1, 2], train, [k for k in keys if k.endswith("_classes") or k in ("ccl_present", "ccl_anchored")],
           "contrast: classes with an anchor")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def ablation_chart(summary: dict, scores: Sequence[tuple[str, str]], path: Path) -> Path:
    """Bars of each variant's mean score over seeds, error bars one sample std (none with one seed)."""
    plt = _pyplot()
    shown = [(k, label) for k, label in scores if all(k in summary["scores"][m] for m in summary["variants"])]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], shown):
        stats = [summary["scores"][m][key] for m in summary["variants"]]
        means = [s["mean"] * 100 for s in stats]
        errors = [(s["std"] or 0.0) * 100 for s in stats]
        ax.bar(summary["variants"], means, yerr=errors, capsize=6, color=[f"C{i}" for i in range(len(stats))])
        if max(map(len, summary["variants"])) > 12:  # key=value labels
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        low = min(m - e for m, e in zip(means, errors))
        ax.set_ylim(max(0.0, low - 5), max(m + e for m, e in zip(means, errors)) + 2)
        ax.set_title(f"{label} (%)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{summary['split']}, seeds {', '.join(map(str, summary['seeds']))} (mean +- std)")
    fig.tight_layout()
    return _save(fig, path)


NUMBERS_UP_TO = 30
"""A confusion matrix of at most this many classes has its percentages written in the cells."""


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""):
    """The figure of a confusion matrix of counts (rows = ground truth, columns = prediction),
    each row normalised to the share of its ground-truth pixels; class names on both axes. Its
    side grows with the class count (150 classes: about 2700 pixels at 100 dpi) and the names
    shrink to fit; above ``NUMBERS_UP_TO`` classes the cells carry no numbers, only colour."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = min(max(5.0, 0.16 * k + 2.5), 30.0)  # inches: 150 classes, a cell of ~15 pixels at 100 dpi
    size = 8.0 if k <= NUMBERS_UP_TO else max(4.0, min(8.0, 900 / k))  # points: 150 classes, 6
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k), list(classes), rotation=90, fontsize=size)
    ax.set_yticks(range(k), list(classes), fontsize=size)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if k <= NUMBERS_UP_TO:
        for i, j in zip(*np.nonzero(share >= 0.005)):
            ax.text(j, i, f"{share[i, j] * 100:.0f}", ha="center", va="center", fontsize=size - 1,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="share of the ground-truth class's pixels")
    what = "confusion matrix, each row normalised" + ("; cells in %" if k <= NUMBERS_UP_TO else "")
    ax.set_title(f"{title}\n{what}" if title else what, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_chart(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> Path:
    """``confusion.png``: ``confusion_figure`` written atomically."""
    return _save(confusion_figure(matrix, classes, title), path)
