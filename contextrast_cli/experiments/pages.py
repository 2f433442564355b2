"""The sections of ``report.html`` for one evaluated checkpoint (``evaluate --report``, ``analyze``):
the summary, the per-class table, the confusion matrix, the training curves, the analyses, BANE views
of a few images and the command and config that produced it (``viz.page`` renders them).

Files drawn here go into the report's folder beside the page (``curves.png``, ``bane/*.png``); the
page embeds every figure, so it opens alone, anywhere.
"""

from pathlib import Path

from contextrast_cli.viz import page
from contextrast_cli.viz.page import Section, points

REPORT_HTML = "report.html"
SUMMARY = (("mIoU", "mIoU"), ("aAcc", "pixel accuracy (aAcc)"), ("mAcc", "mean accuracy (mAcc)"))


def summary_rows(metrics: dict) -> list[list]:
    """(score, value) rows of an evaluation: the means in points, then what was scored."""
    rows = [[label, points(metrics.get(key))] for key, label in SUMMARY]
    edges = metrics.get("boundary") or {}
    rows += [["boundary IoU (mBIoU)", points(edges.get("mBIoU"))], ["boundary F (mBF)", points(edges.get("mBF"))]]
    protocol = metrics.get("eval") or {}
    how = ", ".join(f"{k} {v}" for k, v in protocol.items() if k in ("scales", "flip", "mode") and v is not None)
    rows += [["ONNX graph", metrics["onnx"]]] if metrics.get("onnx") else []
    rows += [["split", f"{metrics['split']} ({metrics['num_images']} images)"],
             ["checkpoint", f"{metrics.get('checkpoint', '-')} (iteration {metrics.get('iteration', '?')})"],
             ["method", metrics.get("method", "-")], ["inference", how or "-"]]
    return rows


def evaluation_sections(metrics: dict) -> list[Section]:
    """Summary, per-class table (sortable) and the feature-space table when measured."""
    from contextrast_cli.evaluation.writers import PER_CLASS_COLUMNS, per_class_rows

    per_class = [[row["class"], *(points(row[c]) for c in PER_CLASS_COLUMNS[1:])] for row in per_class_rows(metrics)]
    sections = [Section("Summary", (page.table(["score", "value"], summary_rows(metrics), name="summary"),)),
                Section("Per class", (page.paragraph("Scores in points (%); click a column header to sort."),
                                      page.table(PER_CLASS_COLUMNS, per_class, sortable=True, name="per-class")))]
    if metrics.get("features"):
        sections.append(Section("Feature space", (feature_table(metrics["features"]),)))
    return sections


def feature_table(features: dict) -> str:
    rows = [[space, layer, page.number(v["A"]), page.number(v["U"]),
             page.number(v["U"] / v["A"] if v["A"] and v["U"] is not None else None), v["pixels"]]
            for space, layers in features.items() for layer, v in (layers or {}).items()]
    return page.table(["space", "layer", "A (spread)", "U (separation)", "U / A", "pixels"], rows, sortable=True,
                      caption="L2-normalised; A: mean pairwise distance within a class, U: between class centroids",
                      name="features")


def figure_section(title: str, files: list[tuple[Path | None, str]], note: str = "") -> Section | None:
    """A section of the figures that exist (None when none does)."""
    parts = [page.figure(path, caption) for path, caption in files if path is not None and Path(path).is_file()]
    if note:
        parts.append(page.paragraph(note, note=True))
    return Section(title, tuple(parts)) if parts else None


def curves_png(checkpoint: Path, folder: Path) -> Path | None:
    """``folder/curves.png`` redrawn from the checkpoint's run folder's ``metrics.jsonl`` (None without one)."""
    from contextrast_cli.train.runlog import MetricsLog
    from contextrast_cli.viz.charts import training_curves

    records = MetricsLog(Path(checkpoint).parent / "metrics.jsonl").read()
    if not records:
        return None
    return training_curves(records, Path(folder) / "curves.png", Path(checkpoint).parent.name)


def bane_pngs(checkpoints: list[Path], split: str, folder: Path, images: int,
              data_root: Path | None = None, device: str = "auto") -> list[Path]:
    """``visualize-boundaries`` figures of the split's first ``images`` images (one row per checkpoint
    when several) in ``folder``."""
    from contextrast_cli.viz.boundaries import visualize_images

    if images <= 0:
        return []
    written = visualize_images([], checkpoints, split=split, num=images, data_root=data_root, out_dir=folder,
                               device=device)
    return [path for path, _ in written]


def provenance(command: str, config: str | None) -> Section:
    """The exact command and the resolved config."""
    parts = [page.paragraph("Command:"), page.code(command or "(not recorded)")]
    if config:
        parts += [page.paragraph("Configuration (resolved):"), page.code(config)]
    return Section("Command and configuration", tuple(parts))


def checkpoint_config(checkpoint: Path, overrides: list[str] = ()) -> str:
    """The checkpoint's resolved config as YAML (with ``--set`` overrides laid over it)."""
    from contextrast_cli.config import resolve_config
    from contextrast_cli.models.checkpoint import load_checkpoint

    return resolve_config(overrides=list(overrides), base=load_checkpoint(checkpoint)["config"]).to_yaml()


def write_evaluation_page(metrics: dict, folder: Path, command: str = "", data_root: Path | None = None,
                          bane_images: int = 2, extra: list[Section] = (), device: str = "auto") -> Path:
    """``folder/report.html`` of ``evaluate``'s metrics (``confusion.png`` already in ``folder``); a
    checkpoint's page adds its training curves, BANE views and config (an ONNX graph's has none).
    ``extra``: more sections (the analyses), placed after the confusion matrix."""
    folder = Path(folder)
    checkpoint = None if metrics.get("onnx") else Path(metrics["checkpoint"])  # a graph's: maybe on another machine
    sections = evaluation_sections(metrics)
    sections.append(figure_section("Confusion matrix", [(folder / "confusion.png", "rows: ground truth, "
                                                         "normalised to 100%")]))
    sections += list(extra)
    if checkpoint is not None:
        sections.append(figure_section("Training curves", [(curves_png(checkpoint, folder), "from the run's "
                                                            "metrics.jsonl")]))
        views = bane_pngs([checkpoint], metrics["split"], folder / "bane", bane_images, data_root, device)
        sections.append(figure_section("BANE views", [(p, p.stem) for p in views]))
    config = checkpoint_config(checkpoint, metrics.get("overrides", [])) if checkpoint is not None else None
    sections.append(provenance(command, config))
    title = f"{metrics.get('method', 'evaluation')}: {metrics['split']}"
    return page.write_page(folder / REPORT_HTML, f"contextrast report, {title}", [s for s in sections if s],
                           subtitle=f"mIoU {metrics['mIoU'] * 100:.2f} on {metrics['num_images']} images")
