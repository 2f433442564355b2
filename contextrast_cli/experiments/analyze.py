"""``contextrast analyze``'s library call: a checkpoint or run folder goes to
``experiments.analysis_run``, an ablation folder to ``experiments.ablation_analysis``."""

from collections.abc import Callable
from pathlib import Path

from contextrast_cli.experiments.ablation_analysis import analyze_ablation
from contextrast_cli.experiments.analysis_run import AnalyzeSpec, analyze_run
from contextrast_cli.train.runs import ABLATION_PLAN, checkpoint_path

__all__ = ["AnalyzeSpec", "analyze", "is_ablation"]


def is_ablation(folder: Path) -> bool:
    """Whether ``folder`` was written by ``contextrast ablate`` (it holds the plan)."""
    return (Path(folder) / ABLATION_PLAN).is_file()


def analyze(spec: AnalyzeSpec, say: Callable[[str], None] = lambda _: None,
            on_batch: Callable[[int, int], None] | None = None) -> Path:
    """Analyse ``spec.target``; returns the written ``report.html``.

    Raises:
        CheckpointError / DataError / ConfigError: as ``evaluate`` raises them, or an ablation run
        without its checkpoint.
    """
    if is_ablation(spec.target):
        return analyze_ablation(spec, say, on_batch)
    checkpoint, note = checkpoint_path(spec.target)
    if note:
        say(note)
    analyze_run(spec, checkpoint, spec.folder, say, on_batch)
    return spec.folder / "report.html"
