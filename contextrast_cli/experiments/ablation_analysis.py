"""``analyze`` over an ablation folder: every run analysed (``experiments.analyze.analyze_run``), then
each analysis score's mean over seeds per variant and its paired differences to the reference, per
seed, with their mean and 95% t interval, as ``ablate`` reports mIoU (``experiments.paired``)."""

import json
from collections.abc import Callable
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.errors import CheckpointError
from contextrast_cli.experiments.ablation_page import ablation_runs, score_sections, write_ablation_page
from contextrast_cli.experiments.analysis_run import ANALYSIS_JSON, AnalyzeSpec, analyze_run
from contextrast_cli.experiments.pages import figure_section
from contextrast_cli.experiments.paired import _interval, _stats  # the ablation's own statistics


def flat_scores(numbers: dict) -> dict[str, float | None]:
    """One run's analysis scores by name: mIoU, each group's IoU, each size bucket's mIoU, each band's mBIoU."""
    scores = {"mIoU": numbers["mIoU"]}
    scores.update({f"{group} IoU": v for group, v in numbers["groups"]["IoU"].items()})
    scores.update({f"mIoU, regions {name}": b["mIoU"] for name, b in numbers["sizes"]["buckets"].items()})
    scores.update({f"boundary IoU {d}": b["mBIoU"] for d, b in numbers["bands"].items()})
    return scores


def summarize(results: dict[str, dict], labels: list[str], seeds: tuple[int, ...],
              names: dict[tuple[str, int], str]) -> dict:
    """Per variant and score: ``_stats`` over seeds; per non-reference variant: ``_interval`` of the
    per-seed differences (scores undefined in some seed are left out)."""
    flat = {name: flat_scores(numbers) for name, numbers in results.items()}
    keys = list(flat[names[(labels[0], seeds[0])]])
    defined = {label: [k for k in keys if all(flat[names[(label, s)]].get(k) is not None for s in seeds)]
               for label in labels}
    summary = {"reference": labels[0], "variants": labels, "seeds": list(seeds), "keys": keys, "scores": {},
               "paired": {}, "runs": {f"{label}, seed {s}": names[(label, s)] for label in labels for s in seeds}}
    for label in labels:
        summary["scores"][label] = {k: _stats([flat[names[(label, s)]][k] for s in seeds]) for k in defined[label]}
        if label != labels[0]:
            summary["paired"][label] = {
                k: _interval([flat[names[(label, s)]][k] - flat[names[(labels[0], s)]][k] for s in seeds])
                for k in defined[label] if k in defined[labels[0]]}
    return summary


def mean_curves(curves: list[dict]) -> dict:
    """The similarity curves of several seeds averaged bin by bin (over the seeds that have the bin)."""
    out: dict = {}
    for space, layers in curves[0].items():
        for layer, first in layers.items():
            present = [c[space][layer] for c in curves if layer in c.get(space, {})]
            mean = {t: [_mean([p[t][i] for p in present]) for i in range(len(first["bins"]))] for t in ("negative", "own")}
            out.setdefault(space, {})[layer] = {"bins": first["bins"], **mean,
                                                "pixels": [sum(p["pixels"][i] for p in present)
                                                           for i in range(len(first["bins"]))]}
    return out


def _mean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def markdown(summary: dict, split: str) -> str:
    """``analysis.md`` of an ablation: means over seeds, then the paired differences, in points."""
    seeds, keys = summary["seeds"], summary["keys"]
    lines = [f"# Analyses of the ablation: {', '.join(summary['variants'])} on {split}", "",
             "Points (%), mean +- sample std over seeds.", "",
             "| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for v in summary["variants"]:
        cells = [(f"{s['mean'] * 100:.2f}" + ("" if s["std"] is None else f" +- {s['std'] * 100:.2f}"))
                 if (s := summary["scores"][v].get(k)) else "-" for k in keys]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired differences (variant - {summary['reference']}), per seed, mean and 95% t interval:", "",
              "| variant | score | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | 95% interval |",
              "|---" * (len(seeds) + 4) + "|"]
    for v, paired in summary["paired"].items():
        for k, d in paired.items():
            ci = "-" if d["ci95"] is None else f"[{d['ci95'][0] * 100:+.2f}, {d['ci95'][1] * 100:+.2f}]"
            lines.append(f"| {v} | {k} | " + " | ".join(f"{x * 100:+.2f}" for x in d["values"])
                         + f" | {d['mean'] * 100:+.2f} | {ci} |")
    return "\n".join(lines) + "\n"


def analyze_ablation(spec: AnalyzeSpec, say: Callable[[str], None] = lambda _: None,
                     on_batch: Callable[[int, int], None] | None = None) -> Path:
    """Analyse every run of the ablation folder ``spec.target``; returns ``<out>/report.html``.

    Raises:
        CheckpointError: a run the ablation has not finished (no checkpoint or no evaluation).
    """
    from contextrast_cli.viz.analysis_figures import similarity_chart

    folder, out = Path(spec.target), spec.folder
    plan, labels, seeds, names = ablation_runs(folder)
    results = {}
    for seed in seeds:
        for label in labels:
            run = folder / names[(label, seed)]
            evaluation = run / "evaluation.json"
            if not evaluation.is_file():
                raise CheckpointError(f"{run} has no evaluation.json: the ablation has not finished this run; run "
                                      f"the same `contextrast ablate` command first, then analyze again")
            scored = json.loads(evaluation.read_text(encoding="utf-8"))
            checkpoint = run / f"{plan['checkpoint']}.pt"
            results[names[(label, seed)]] = analyze_run(spec, checkpoint, out / names[(label, seed)], say, on_batch,
                                                        spec.split or scored["split"], page=False)
    summary = summarize(results, labels, seeds, names)
    split = results[names[(labels[0], seeds[0])]]["split"]
    atomic_write_text(out / ANALYSIS_JSON, json.dumps({"split": split, **summary}, indent=2))
    atomic_write_text(out / "analysis.md", markdown(summary, split))
    curves = {label: mean_curves([results[names[(label, s)]]["similarity"] for s in seeds]) for label in labels}
    similarity_chart(curves, out / "similarity.png", "misclassified pixels: similarity to the anchors, mean over seeds")
    ablation = json.loads((folder / "ablation.json").read_text(encoding="utf-8"))
    scores = [(k, k) for k in summary["keys"]]
    extra = score_sections(summary, scores, "Analyses", "analysis") + [s for s in [
        figure_section("Similarity of misclassified pixels to the anchors", [
            (out / "similarity.png", "solid: each error pixel's negative anchor; dashed: its own class's")]),
        figure_section("Grad-CAM and t-SNE (first seed of each variant)", [
            (out / names[(label, seeds[0])] / f, f"{label}: {f[:-4]}") for label in labels
            for f in ("gradcam.png", "tsne.png")])] if s is not None]
    return write_ablation_page(folder, ablation, spec.command, out, extra, spec.bane_images, spec.data_root,
                               spec.device or "auto")
