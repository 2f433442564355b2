"""The ablation's ``report.html`` (``ablate``, and ``analyze`` over an ablation folder): the scores over
seeds, the paired differences per seed with their mean and interval, the per-class deltas, the bar
chart, each variant's confusion matrix (summed over seeds) and training curves (first seed), BANE
views of every variant's first-seed run side by side, and the plan and reference config."""

import json
import tempfile
from pathlib import Path

from contextrast_cli.experiments.axes import Axis, folder_names, grid
from contextrast_cli.experiments.pages import REPORT_HTML, bane_pngs, curves_png, figure_section, provenance
from contextrast_cli.experiments.paired import SCORES
from contextrast_cli.train.runs import ABLATION_PLAN
from contextrast_cli.viz import page
from contextrast_cli.viz.page import Cell, Section, points


def ablation_runs(folder: Path) -> tuple[dict, list[str], tuple[int, ...], dict[tuple[str, int], str]]:
    """The ablation's plan, its variant labels (reference first), seeds, and (label, seed) -> run folder name."""
    plan = json.loads((Path(folder) / ABLATION_PLAN).read_text(encoding="utf-8"))
    variants = grid([Axis(key, tuple(values)) for key, values in plan["axes"].items()])
    seeds = tuple(plan["seeds"])
    names = folder_names(variants, seeds)
    return plan, [v.label for v in variants], seeds, {(v.label, s): names[(v, s)] for v, s in names}


def _mean_std(stats: dict | None) -> Cell:
    if not stats:
        return Cell("-", None, True)
    std = "" if stats["std"] is None else f" +- {stats['std'] * 100:.2f}"
    return Cell(f"{stats['mean'] * 100:.2f}{std}", stats["mean"], True)


def paired_rows(summary: dict, scores: list[tuple[str, str]]) -> list[list]:
    """(variant, score, per-seed differences..., mean, 95% interval) rows of ``summary['paired']``."""
    rows = []
    for variant, paired in summary["paired"].items():
        for key, label in scores:
            if key in paired:
                d = paired[key]
                ci = "-" if d["ci95"] is None else f"[{d['ci95'][0] * 100:+.2f}, {d['ci95'][1] * 100:+.2f}]"
                rows.append([variant, label, *(points(v, signed=True) for v in d["values"]),
                             points(d["mean"], signed=True), ci])
    return rows


def score_sections(summary: dict, scores: list[tuple[str, str]], what: str, name: str) -> list[Section]:
    """Mean +- std per variant and the paired differences of ``scores``."""
    seeds = summary["seeds"]
    means = [[v, *(_mean_std(summary["scores"][v].get(key)) for key, _ in scores)] for v in summary["variants"]]
    return [Section(f"{what}: scores over seeds", (
                page.paragraph(f"Points (%), mean +- sample std over seeds {', '.join(map(str, seeds))}."),
                page.table(["variant", *(label for _, label in scores)], means, name=f"{name}-scores"))),
            Section(f"{what}: paired differences to {summary['reference']}", (
                page.paragraph("Per seed (same data order and initial weights), their mean and 95% t interval."),
                page.table(["variant", "score", *(f"seed {s}" for s in seeds), "mean", "95% interval"],
                           paired_rows(summary, scores), name=f"{name}-paired")))]


def ablation_sections(summary: dict, folder: Path, out: Path, bane_images: int = 2, data_root: Path | None = None,
                      device: str = "auto") -> list[Section]:
    """Every section of the ablation's page but the command (figures drawn into ``out``, a scratch
    folder: the page embeds them)."""
    from contextrast_cli.viz.charts import confusion_chart

    _, labels, seeds, names = ablation_runs(folder)
    sections = score_sections(summary, list(SCORES), "Ablation", "ablation")
    for variant, deltas in summary["per_class"].items():
        rows = [[c, points(v, signed=True), points(deltas["BIoU"].get(c), signed=True)] for c, v in deltas["IoU"].items()]
        sections.append(Section(f"Per-class deltas, {variant} - {summary['reference']}", (
            page.table(["class", "IoU delta", "boundary IoU delta"], rows, sortable=True, name=f"deltas-{variant}"),)))
    sections.append(figure_section("Scores chart", [(Path(folder) / "ablation.png", "mean +- std over seeds")]))
    confusions, curves = [], []
    for label in labels:
        runs = [json.loads((Path(folder) / names[(label, s)] / "evaluation.json").read_text()) for s in seeds]
        matrix = [[sum(r["confusion"]["matrix"][i][j] for r in runs) for j in range(len(runs[0]["confusion"]["matrix"]))]
                  for i in range(len(runs[0]["confusion"]["matrix"]))]
        path = confusion_chart(matrix, runs[0]["confusion"]["classes"], Path(out) / f"confusion_{names[(label, seeds[0])]}.png",
                               f"{label}, seeds summed")
        confusions.append((path, label))
        run = Path(folder) / names[(label, seeds[0])]
        target = Path(out) / "curves" / names[(label, seeds[0])]
        curves.append((curves_png(run / "last.pt", target), f"{label}, seed {seeds[0]}"))
    sections.append(figure_section("Confusion matrices", confusions))
    sections.append(figure_section("Training curves", curves))
    first = [Path(folder) / names[(label, seeds[0])] / f"{summary.get('checkpoint', 'last')}.pt" for label in labels]
    views = bane_pngs(first, summary["split"], Path(out) / "bane", bane_images, data_root, device)
    sections.append(figure_section("BANE views", [(p, f"{p.stem}: one row per variant (seed {seeds[0]})")
                                                  for p in views]))
    return [s for s in sections if s is not None]


def write_ablation_page(folder: Path, summary: dict, command: str = "", out: Path | None = None,
                        extra: list[Section] = (), bane_images: int = 2, data_root: Path | None = None,
                        device: str = "auto") -> Path:
    """``<out>/report.html`` of an ablation folder (``out`` defaults to the folder), with ``extra``
    sections (the analyses) after the ablation's own. No other file is left beside it."""
    folder = Path(folder)
    out = Path(out or folder)
    out.mkdir(parents=True, exist_ok=True)
    plan, labels, seeds, names = ablation_runs(folder)
    with tempfile.TemporaryDirectory(prefix="contextrast-report-") as scratch:  # the page embeds its figures
        sections = ablation_sections(summary, folder, Path(scratch), bane_images, data_root, device) + list(extra)
    config_file = folder / names[(labels[0], seeds[0])] / "config.yaml"
    config = (f"# {ABLATION_PLAN}\n{json.dumps(plan, indent=2)}\n\n# reference run: {config_file}\n"
              + (config_file.read_text(encoding="utf-8") if config_file.is_file() else ""))
    sections.append(provenance(command, config))
    title = f"contextrast ablation: {', '.join(labels)} ({folder.name})"
    return page.write_page(out / REPORT_HTML, title, sections,
                           subtitle=f"{summary['split']}, {summary['num_images']} images, seeds "
                                    f"{', '.join(map(str, seeds))}; reference {summary['reference']}")
