"""``analyze`` of one checkpoint (``experiments.analyze`` dispatches; ``experiments.ablation_analysis``
takes ablation folders): the papers' analyses (``evaluation.analyses``) as files and one ``report.html``.

One checkpoint: ``<out>/analysis.json`` (every number, with the protocol it was computed under),
``analysis.md``, ``per_class.csv``, ``groups.csv``, ``confusion.png``, ``curves.png``,
``similarity.png``, ``tsne.png``, ``gradcam.png``, ``bane/*.png`` and ``report.html``.

An ablation folder (``contextrast ablate``'s): every run is analysed into ``<out>/<run>/`` as
above (its checkpoint as the ablation scored it, ``last.pt`` or ``best.pt``, on the ablation's
split unless ``split`` says otherwise), then ``<out>/analysis.json`` and ``analysis.md`` hold each
variant's scores over seeds and the paired differences to the reference per seed, their mean and
95% interval (``experiments.paired``), and ``<out>/report.html`` the ablation's page with them.
Interrupted, the same command resumes: a run whose ``analysis.json`` was computed under the same
protocol (checkpoint file and its time, split, settings, overrides) is not analysed again.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.errors import CheckpointError, DataError
from contextrast_cli.evaluation.analyses.run import AnalysisSettings

ANALYSIS_JSON = "analysis.json"


@dataclass(frozen=True)
class AnalyzeSpec:
    """What ``analyze`` reads and how.

    Attributes:
        target: a checkpoint file, a run folder (its best.pt, else last.pt) or an ablation folder.
        out: the output folder (default: ``analysis/`` inside a run or ablation folder, beside a file).
        overrides: ``--set key=value`` laid over each checkpoint's config.
        bane_images: images of the split drawn with ``visualize-boundaries`` on the page.
        command: the command line, shown on the page.
    """

    target: Path
    out: Path | None = None
    split: str | None = None
    overrides: tuple[str, ...] = ()
    data_root: Path | None = None
    device: str | None = None
    settings: AnalysisSettings = AnalysisSettings()
    bane_images: int = 2
    command: str = ""

    @property
    def folder(self) -> Path:
        target = Path(self.target)
        return Path(self.out) if self.out else (target / "analysis" if target.is_dir() else target.parent / "analysis")


def protocol(spec: AnalyzeSpec, checkpoint: Path, split: str | None) -> dict:
    """What an ``analysis.json`` was computed under; the same protocol again means nothing to redo."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint} does not exist; pass a checkpoint, a run folder or an ablation folder")
    return {"checkpoint": str(checkpoint.resolve()), "modified_ns": checkpoint.stat().st_mtime_ns, "split": split,
            "settings": spec.settings.record(), "overrides": list(spec.overrides),
            "data_root": str(spec.data_root) if spec.data_root else None}


def recorded(folder: Path) -> dict | None:
    """The ``analysis.json`` in ``folder`` (None when absent or unreadable: an interrupted write)."""
    try:
        return json.loads((Path(folder) / ANALYSIS_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def analyze_run(spec: AnalyzeSpec, checkpoint: Path, folder: Path, say: Callable[[str], None],
                on_batch: Callable[[int, int], None] | None = None, split: str | None = None,
                page: bool = True) -> dict:
    """Analyse one checkpoint into ``folder`` unless it was, under the same protocol; its numbers.

    ``analysis.json`` is written last, once every other file is in place: it marks the run done."""
    from contextrast_cli.evaluation.analyses.run import analyze_checkpoint

    split = split or spec.split
    wanted = protocol(spec, checkpoint, split)
    done = recorded(folder)
    if done is not None and done.get("protocol") == wanted:
        say(f"{folder}: analysed before under the same protocol; kept")
        return done
    say(f"analysing {checkpoint}" + (f" on {split}" if split else ""))
    result = analyze_checkpoint(checkpoint, split=split, data_root=spec.data_root, device=spec.device or "auto",
                                overrides=list(spec.overrides), settings=spec.settings, on_batch=on_batch)
    numbers = {"protocol": wanted, **result.numbers}
    write_run_files(spec, result, numbers, Path(folder), page)
    atomic_write_text(Path(folder) / ANALYSIS_JSON, json.dumps(numbers, indent=2))
    return numbers


def write_run_files(spec: AnalyzeSpec, result, numbers: dict, folder: Path, page: bool) -> None:
    """Every file of one checkpoint's analysis but ``analysis.json``."""
    from contextrast_cli.experiments.analysis_tables import analysis_sections, markdown, write_csvs
    from contextrast_cli.experiments.pages import write_evaluation_page
    from contextrast_cli.viz.analysis_figures import gradcam_grid, similarity_chart, tsne_chart
    from contextrast_cli.viz.report import write_report

    classes, palette = numbers["confusion"]["classes"], _palette(numbers)
    write_report(numbers, folder)  # a figure it could not draw is left out of the page
    write_csvs(numbers, folder)
    atomic_write_text(folder / "analysis.md", markdown(numbers))
    label = numbers.get("method", "run")
    similarity_chart({label: numbers["similarity"]}, folder / "similarity.png")
    tsne_chart(result.tsne, classes, palette, folder / "tsne.png")
    gradcam_grid(result.cams, classes, folder / "gradcam.png")
    if page:
        write_evaluation_page(numbers, folder, spec.command, spec.data_root, spec.bane_images,
                              extra=analysis_sections(numbers, folder), device=spec.device or "auto")


def _palette(numbers: dict) -> list:
    """The dataset's palette, read from the prepared dataset the numbers name."""
    from contextrast_cli.data.prepared import read_prepared

    try:
        return [list(c) for c in read_prepared(Path(numbers["dataset"])).palette]
    except DataError:
        return [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(len(numbers["IoU"]))]
