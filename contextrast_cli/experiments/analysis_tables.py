"""One checkpoint's analyses as tables: ``analysis.md``, ``groups.csv``, ``analysis_per_class.csv``
and the page's sections (``viz.page``), all from the numbers of ``analysis.json``."""

import csv
import io
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.viz import page
from contextrast_cli.viz.page import Section, points

SIMILARITY_SPACES = {"layers": "encoder features", "embeddings": "projection heads"}


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def group_of(numbers: dict) -> dict[str, str]:
    return {c: group for group, members in numbers["groups"]["classes"].items() for c in members}


def per_class_rows(numbers: dict) -> tuple[list[str], list[list]]:
    """Columns and rows (raw values) of every per-class analysis: group, training pixels, IoU, boundary
    IoU at each band, IoU in each size bucket."""
    bands, buckets = numbers["bands"], numbers["sizes"]["buckets"]
    columns = ["class", "group", "train pixels", "IoU", *(f"boundary IoU {d}" for d in bands),
               *(f"IoU {name}" for name in buckets)]
    groups, pixels = group_of(numbers), numbers["groups"]["train_pixels"]
    rows = [[c, groups[c], pixels[c], numbers["IoU"][c], *(bands[d]["BIoU"][c] for d in bands),
             *(buckets[b]["IoU"][c] for b in buckets)] for c in numbers["IoU"]]
    return columns, rows


def write_csvs(numbers: dict, folder: Path) -> None:
    """``groups.csv`` (class, group, training pixels) and ``analysis_per_class.csv`` (``per_class_rows``;
    scores as fractions, empty where undefined)."""
    columns, rows = per_class_rows(numbers)
    for name, cols, body in (("groups.csv", columns[:3], [r[:3] for r in rows]),
                             ("analysis_per_class.csv", columns, rows)):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([["" if v is None else v for v in row] for row in body])
        atomic_write_text(Path(folder) / name, text.getvalue())


def markdown(numbers: dict) -> str:
    """``analysis.md``: the analyses of one checkpoint, scores in points (%)."""
    groups, sizes, bands = numbers["groups"], numbers["sizes"]["buckets"], numbers["bands"]
    lines = [f"# Analysis: {numbers.get('method', '')} on {numbers['split']} ({numbers['num_images']} images)", "",
             f"Checkpoint {numbers.get('checkpoint')} (iteration {numbers.get('iteration')}). Scores in points (%). "
             f"mIoU {_pts(numbers['mIoU'])}.", "", "## Head, mid and tail classes", "",
             "Classes sorted by their training pixel count, cut in three equal groups.", "",
             "| group | classes | IoU |", "|---|---|---|"]
    lines += [f"| {g} | {', '.join(groups['classes'][g])} | {_pts(v)} |" for g, v in groups["IoU"].items()]
    lines += ["", "## mIoU by object size", "", "Connected ground-truth regions by pixel count.", "",
              "| region size | regions | pixels | mIoU |", "|---|---|---|---|"]
    lines += [f"| {name} | {b['regions']} | {b['pixels']} | {_pts(b['mIoU'])} |" for name, b in sizes.items()]
    lines += ["", "## Boundary IoU by band half-width", "", "| band | mBIoU |", "|---|---|"]
    lines += [f"| {d} | {_pts(b['mBIoU'])} |" for d, b in bands.items()]
    lines += ["", "## Misclassified pixels: mean cosine similarity to the anchors", "",
              "By distance from the error boundary in layer cells; 'negative': the anchor of the predicted class "
              "(BANE's), 'own': the anchor of the labelled class.", ""]
    for space, layers in numbers["similarity"].items():
        for layer, curve in layers.items():
            if not lines[-1].startswith("|"):
                lines += ["| space | layer | anchor | " + " | ".join(curve["bins"]) + " |",
                          "|---" * (3 + len(curve["bins"])) + "|"]
            for target in ("negative", "own", "pixels"):
                cells = [("-" if v is None else f"{v:.3f}" if target != "pixels" else str(v)) for v in curve[target]]
                lines.append(f"| {SIMILARITY_SPACES.get(space, space)} | {layer} | {target} | " + " | ".join(cells) + " |")
    if groups.get("note"):
        lines += ["", f"Note: {groups['note']}"]
    return "\n".join(lines) + "\n"


def analysis_sections(numbers: dict, folder: Path) -> list[Section]:
    """The page's analysis sections: groups, sizes, bands (each a summary and a sortable per-class
    table), the similarity curves, Grad-CAM and t-SNE figures (those in ``folder``)."""
    from contextrast_cli.experiments.pages import figure_section

    groups, sizes, bands = numbers["groups"], numbers["sizes"]["buckets"], numbers["bands"]
    columns, rows = per_class_rows(numbers)
    per_class = [[r[0], r[1], r[2], *(points(v) for v in r[3:])] for r in rows]
    sections = [
        Section("Head, mid and tail classes", (
            page.paragraph("Classes sorted by their training pixel count (as the prepared dataset records it), "
                           "cut in three equal groups; a group's IoU is the mean of its classes'."),
            page.table(["group", "classes", "IoU"], [[g, ", ".join(groups["classes"][g]), points(v)]
                                                     for g, v in groups["IoU"].items()], name="groups"),
            *([page.paragraph(groups["note"], note=True)] if groups.get("note") else []))),
        Section("mIoU by object size", (
            page.paragraph("Connected ground-truth regions (8-connectivity) bucketed by pixel count; each bucket "
                           "scored on its regions' pixels only."),
            page.table(["region size", "regions", "pixels", "mIoU"],
                       [[n, b["regions"], b["pixels"], points(b["mIoU"])] for n, b in sizes.items()], name="sizes"),)),
        Section("Boundary IoU by band width", (
            page.table(["band half-width", "mBIoU"], [[d, points(b["mBIoU"])] for d, b in bands.items()],
                       name="bands"),)),
        Section("Per-class analyses", (page.paragraph("Scores in points (%); click a column header to sort."),
                                       page.table(columns, per_class, sortable=True, name="analysis-per-class"))),
        figure_section("Similarity of misclassified pixels to the anchors", [
            (folder / "similarity.png", "solid: the anchor each error pixel is a negative of (its predicted "
             "class); dashed: its own class's anchor")]),
        figure_section("Grad-CAM", [(folder / "gradcam.png", "per class, at each tapped layer")]),
        figure_section("t-SNE", [(folder / "tsne.png", "a seeded sample of pixels of each class")])]
    return [s for s in sections if s is not None]
