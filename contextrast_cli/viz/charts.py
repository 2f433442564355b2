"""Plots with matplotlib (Agg, no screen): a run's training curves and an ablation's bar chart.

Both take plain records (``metrics.jsonl`` lines, an ablation summary) and write a PNG atomically.
"""

from collections.abc import Sequence
from pathlib import Path

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
