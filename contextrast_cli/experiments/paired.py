"""An ablation's numbers: means over seeds, paired per-seed differences with a 95% interval,
per-class deltas, and the files ``ablation.json`` / ``ablation.md`` / ``ablation.png``.

The interval is Student's t on the per-seed differences (mean +- t_{0.975, n-1} * sd / sqrt(n));
with two seeds t = 12.7, so only a large, consistent difference excludes zero.
"""

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text

SCORES = (("mIoU", "mIoU"), ("mBIoU", "boundary IoU"), ("mBF", "boundary F"))


def _score(run: dict, key: str) -> float | None:
    return run.get(key) if key == "mIoU" else (run.get("boundary") or {}).get(key)


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"values": values, "mean": mean, "std": std}


def _interval(diffs: list[float]) -> dict:
    from scipy.stats import t

    stats = _stats(diffs)
    if stats["std"] is None:
        return {**stats, "ci95": None}
    half = float(t.ppf(0.975, len(diffs) - 1)) * stats["std"] / math.sqrt(len(diffs))
    return {**stats, "ci95": [stats["mean"] - half, stats["mean"] + half]}


def _class_deltas(runs: dict, base: dict, key: str, sub: str | None = None) -> dict:
    """Mean over seeds of (method - baseline) per class; None where either is undefined."""
    def table(run):
        return (run.get(sub) or {}).get(key, {}) if sub else run.get(key, {})

    classes = list(table(next(iter(base.values()))))
    out = {}
    for name in classes:
        diffs = [table(runs[s])[name] - table(base[s])[name] for s in base
                 if table(runs[s]).get(name) is not None and table(base[s]).get(name) is not None]
        out[name] = sum(diffs) / len(diffs) if diffs else None
    return out


def _feature_means(runs: list[dict], space: str) -> dict | None:
    """Per layer, A and U averaged over the seeds where they are defined (None where no seed has
    one; the whole space None when the runs did not measure it)."""
    tables = [(run.get("features") or {}).get(space) for run in runs]
    if not tables or any(t is None for t in tables):
        return None
    return {layer: {m: _mean_defined([t[layer][m] for t in tables]) for m in ("A", "U")} for layer in tables[0]}


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def summarize_ablation(results: dict[str, dict], methods: Sequence[str], seeds: Sequence[int],
              run_name: Callable[[str, int], str]) -> dict:
    """The ablation's summary from each run's ``evaluation.json`` content (keyed by run name)."""
    by_method = {m: {s: results[run_name(m, s)] for s in seeds} for m in methods}
    baseline = methods[0]
    first = results[run_name(baseline, seeds[0])]
    summary = {"reference": baseline, "variants": list(methods), "seeds": list(seeds), "units": "fraction",
               "split": first.get("split"), "num_images": first.get("num_images"), "scores": {}, "paired": {},
               "per_class": {}, "features": {}}
    for method in methods:
        runs = by_method[method]
        summary["scores"][method] = {key: _stats([_score(runs[s], key) for s in seeds])
                                     for key, _ in SCORES if all(_score(runs[s], key) is not None for s in seeds)}
        summary["features"][method] = {space: _feature_means(list(runs.values()), space)
                                       for space in ("layers", "embeddings")}
        if method == baseline:
            continue
        base = by_method[baseline]
        summary["paired"][method] = {
            key: {**_interval([_score(runs[s], key) - _score(base[s], key) for s in seeds]), "seeds": list(seeds)}
            for key in summary["scores"][method] if key in summary["scores"][baseline]}
        summary["per_class"][method] = {"IoU": _class_deltas(runs, base, "IoU"),
                                        "BIoU": _class_deltas(runs, base, "BIoU", "boundary")}
    return summary


def _points(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else (f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}")


def _plain(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _selection(summary: dict) -> str:
    return f", best.pt chosen on {summary['select_split']}" if summary.get("select_split") else ""


def markdown(summary: dict) -> str:
    """The summary as Markdown tables (scores in points: percent x 100)."""
    base, methods = summary["reference"], summary["variants"]
    lines = [f"# Ablation: {', '.join(methods)} over seeds {', '.join(map(str, summary['seeds']))}", "",
             f"Scored: {summary.get('checkpoint', 'best')}.pt of each run on {summary['split']} "
             f"({summary['num_images']} images){_selection(summary)}. Scores in points (%); "
             f"mean +- sample std over seeds.", "",
             "| variant | " + " | ".join(label for _, label in SCORES) + " |", "|---" * (len(SCORES) + 1) + "|"]
    for m in methods:
        cells = [f"{_points(s['mean'])} +- {_points(s['std'])}" if (s := summary["scores"][m].get(key)) else "-"
                 for key, _ in SCORES]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    seeds = summary["seeds"]
    lines += ["", f"Paired differences (variant - {base}), per seed, their mean and 95% t interval:", "",
              "| variant | score | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | 95% interval |",
              "|---" * (len(seeds) + 4) + "|"]
    for m, scores in summary["paired"].items():
        for key, label in SCORES:
            if key in scores:
                d = scores[key]
                ci = "-" if d["ci95"] is None else f"[{_points(d['ci95'][0], True)}, {_points(d['ci95'][1], True)}]"
                lines.append(f"| {m} | {label} | " + " | ".join(_points(v, True) for v in d["values"])
                             + f" | {_points(d['mean'], True)} | {ci} |")
    for m, deltas in summary["per_class"].items():
        lines += ["", f"Per-class deltas, {m} - {base} (mean over seeds):", "", "| class | IoU | boundary IoU |",
                  "|---|---|---|"]
        lines += [f"| {c} | {_points(v, True)} | {_points(deltas['BIoU'].get(c), True)} |"
                  for c, v in deltas["IoU"].items()]
    lines += _feature_lines(summary)
    return "\n".join(lines) + "\n"


def _feature_lines(summary: dict) -> list[str]:
    rows = []
    for m, spaces in summary["features"].items():
        for space, label in (("layers", "encoder features"), ("embeddings", "projection-head embeddings")):
            for layer, v in (spaces.get(space) or {}).items():
                ratio = f"{v['U'] / v['A']:.3f}" if v["A"] and v["U"] is not None else "-"
                rows.append(f"| {m} | {label} | {layer} | {_plain(v['A'])} | {_plain(v['U'])} | {ratio} |")
    if not rows:
        return []
    return ["", "Feature space (L2-normalised; A: intra-class spread, U: inter-class separation, mean over seeds):",
            "", "| variant | space | layer | A | U | U / A |", "|---|---|---|---|---|---|", *rows]


def write_summary(folder: Path, summary: dict) -> None:
    """``ablation.json``, ``ablation.md`` and the bar chart ``ablation.png`` (each written atomically)."""
    from contextrast_cli.viz.charts import ablation_chart

    atomic_write_text(folder / "ablation.json", json.dumps(summary, indent=2))
    atomic_write_text(folder / "ablation.md", markdown(summary))
    ablation_chart(summary, [(k, label) for k, label in SCORES], folder / "ablation.png")
