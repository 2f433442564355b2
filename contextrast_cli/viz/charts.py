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


FEW_POINTS = 3
"""A series of at most this many points is drawn with large markers (one point: its value written too)."""


def _panel(ax, records: list[dict], keys: Sequence[str], title: str, ylabel: str) -> None:
    """One panel: a line per key over whole iterations, its y label, the legend below the axes (never
    over a curve); a series of few points has large markers, a single point (one validation) its value."""
    from matplotlib.ticker import MaxNLocator

    for key in keys:
        xs, ys = _series(records, key)
        if not xs:
            continue
        few = len(xs) <= FEW_POINTS
        line, = ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=7 if few else 3)
        for x, y in zip(xs, ys) if len(xs) == 1 else ():  # a lone point says its value
            ax.annotate(f"{y:.4g}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                        color=line.get_color())
    if any(len(_series(records, key)[0]) == 1 for key in keys):
        ax.margins(y=0.25)  # room for the value written above the marker
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=min(3, len(handles)), frameon=False)


def _curve_panels(train: list[dict], val: list[dict]) -> list[tuple]:
    """(records, keys, title, y label, how) of every panel with something to draw: a cross-entropy
    run has no contrast panel."""
    keys = sorted({k for r in train for k in r})
    val_rows = [{**r, "mBIoU": (r.get("boundary") or {}).get("mBIoU")} for r in val]
    panels = [(train, [k for k in keys if k.startswith("loss")], "losses", "loss", None),
              (train, ["lr"], "learning rate", "learning rate", None),
              (val_rows, ["mIoU", "mBIoU"], f"validation ({val[-1]['split']})" if val else "validation",
               "score (fraction)", None),
              (train, [k for k in keys if k.endswith("_sim")], "contrast: mean similarity to the anchor",
               "cosine similarity", None),
              (train, [k for k in keys if k.endswith(("_bane", "_topup"))], "contrast: negatives per anchor",
               "negatives per anchor (log scale)", "log"),
              (train, [k for k in keys if k.endswith("_classes") or k in ("ccl_present", "ccl_anchored")],
               "contrast: classes with an anchor", "classes", "integer"),
              (train, [k for k in keys if k in ("pc_pairs", "pc_views")], "pixel contrast: pairs and views per pair",
               "count", None)]
    return panels[:3] + [panel for panel in panels[3:] if panel[1] and any(
        r.get(k) is not None for r in panel[0] for k in panel[1])]


def curves_figure(records: list[dict], title: str = ""):
    """The figure of ``curves.png``: losses, learning rate and validation scores over iterations
    and, for a contrastive run, its diagnostics (anchor-positive / anchor-negative similarity,
    BANE and top-up negatives per anchor on a log scale, classes with an anchor; the pixel-contrast
    baseline's pairs and views). All panels share the iteration axis."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "mIoU" in r]
    panels = _curve_panels(train, val)
    rows = -(-len(panels) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.6 * rows), sharex=True, squeeze=False, layout="constrained")
    for ax, (rows_of, keys, name, ylabel, how) in zip(axes.flat, panels):
        _panel(ax, rows_of, keys, name, ylabel)
        if how == "log":
            ax.set_yscale("symlog", linthresh=1)  # zeros stay drawable; small layers' counts stay visible
        elif how == "integer":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.remove()
    for ax in axes.flat:
        ax.tick_params(labelbottom=True)  # shared x: every panel keeps its own tick labels
    fig.suptitle(title)
    return fig


def training_curves(records: list[dict], path: Path, title: str = "") -> Path:
    """``curves.png`` (``curves_figure``) from a run's ``metrics.jsonl`` records, written atomically."""
    return _save(curves_figure(records, title), path)


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
    each row normalised to the percentage of its ground-truth pixels (cells and colour bar in %,
    0 to 100); class names on both axes. Its
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
    percent = share * 100  # the cells' numbers and the colour bar in the same unit
    image = ax.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0, interpolation="nearest")
    ax.set_xticks(range(k), list(classes), rotation=90, fontsize=size)
    ax.set_yticks(range(k), list(classes), fontsize=size)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if k <= NUMBERS_UP_TO:
        for i, j in zip(*np.nonzero(percent >= 0.5)):
            ax.text(j, i, f"{percent[i, j]:.0f}", ha="center", va="center", fontsize=size - 1,
                    color="white" if percent[i, j] > 50 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="% of the ground-truth class's pixels")
    what = "confusion matrix, each row normalised" + ("; cells in %" if k <= NUMBERS_UP_TO else "")
    ax.set_title(f"{title}\n{what}" if title else what, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_chart(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> Path:
    """``confusion.png``: ``confusion_figure`` written atomically."""
    return _save(confusion_figure(matrix, classes, title), path)
