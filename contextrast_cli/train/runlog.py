"""A run's record of itself: ``metrics.jsonl`` (every logged line and validation, without the
confusion matrix), ``curves.png``, ``per_class.csv``, ``confusion.png`` and ``validation.json``
(rewritten at each validation: the latest validation's) and the trackers of ``train.loggers``
(``trackers``: TensorBoard, MLflow, W&B). Written by the main process only."""

import json
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.train.trackers import Trackers

RUN_FILES = ("config.yaml", "curves.png", "validation.json", "per_class.csv", "confusion.png")
"""What the trackers receive as artifacts when a run ends."""


class MetricsLog:
    """JSON lines, appended; each record is flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate(self, iteration: int, validation_redone: bool = False) -> int:
        """Drop the records after ``iteration`` (and its validation record with
        ``validation_redone``), rewriting the file atomically: a run resumed there logs them again.

        Returns:
            How many records were dropped.
        """
        records = self.read()
        kept = [r for r in records if r["iteration"] < iteration or (r["iteration"] == iteration and not (
            validation_redone and "split" in r))]
        if len(kept) < len(records):
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return len(records) - len(kept)

    def read(self) -> list[dict]:
        """All records (empty when the file does not exist)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a record, nested keys joined by ``/`` (``IoU/road``, ``boundary/mBIoU``)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "iteration":
            out[f"{prefix}{key}"] = float(value)
    return out


class RunLog:
    """``metrics.jsonl`` + ``curves.png`` + the validation report + the trackers of one run folder.

    Args:
        resumed_at: the iteration a resumed run continues from: the records after it are dropped
            (``validation_redone``: its validation record too), so none is logged twice.
        trackers: ``Trackers``' keywords (``kinds``, ``name``, ``config``, ``tags``, ``ids``,
            ``warn``) on the main process; None logs to the run folder only.

    Raises:
        ConfigError: a tracker's package is not installed.
    """

    def __init__(self, run_dir: Path, title: str = "", resumed_at: int | None = None,
                 validation_redone: bool = False, trackers: dict | None = None) -> None:
        self.run_dir, self.title = Path(run_dir), title
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        if resumed_at is not None:  # records after the resumed iteration are logged again
            self.metrics.truncate(resumed_at, validation_redone)
        # purge_step hides the TensorBoard events a resumed run writes again (TensorBoard's own mechanism)
        purge = None if resumed_at is None else resumed_at + (0 if validation_redone else 1)
        self.trackers = Trackers(run_dir=self.run_dir, purge_step=purge, **trackers) if trackers else None

    @property
    def tracker_ids(self) -> dict[str, str]:
        """The MLflow / W&B run ids, for ``last.pt`` (a resumed run continues them)."""
        return self.trackers.ids if self.trackers is not None else {}

    def write(self, record: dict) -> None:
        """Append ``record`` (it has an ``iteration``); the trackers get its numbers, validation
        records (with ``split``) under ``<split>/``, training ones under ``train/``."""
        self.metrics.write(record)
        if self.trackers is not None:
            group = record.get("split", "train")
            values = scalars({k: v for k, v in record.items() if k != "num_images"})
            self.trackers.metrics({f"{group}/{key}": value for key, value in values.items()}, record["iteration"])

    def plot(self) -> str | None:
        """Redraw ``curves.png`` from everything logged so far; a note when it could not be drawn
        (a figure that cannot be drawn costs the figure, not the run)."""
        from contextrast_cli.viz.charts import training_curves

        try:
            training_curves(self.metrics.read(), self.run_dir / "curves.png", self.title)
        except Exception as exc:  # noqa: BLE001
            return f"note: curves.png not drawn: {type(exc).__name__}: {exc}"
        return None

    def validation(self, iteration: int, metrics: dict) -> list[str]:
        """Log a validation (``evaluate_split``'s metrics): its record (the confusion matrix left
        out: ``confusion.png`` and the checkpoints hold it), then redraw ``curves.png`` and rewrite
        ``per_class.csv`` and ``confusion.png``. Returns notes of what could not be drawn or written."""
        self.write({"iteration": iteration, **{k: v for k, v in metrics.items() if k != "confusion"}})
        return [note for note in (self.plot(), self.report(iteration, metrics)) if note]

    def report(self, iteration: int, metrics: dict) -> str | None:
        """Rewrite ``validation.json``, ``per_class.csv`` and ``confusion.png``; a note when they
        could not be written (as ``plot``: it costs the files, not the run)."""
        from contextrast_cli.viz.report import write_report

        try:
            atomic_write_text(self.run_dir / "validation.json", json.dumps({"iteration": iteration, **metrics}))
            title = f"{metrics['split']} ({metrics['num_images']} images), iteration {iteration}"
            return write_report(metrics, self.run_dir, f"{self.title}: {title}" if self.title else title)
        except Exception as exc:  # noqa: BLE001
            return f"note: per_class.csv not written: {type(exc).__name__}: {exc}"

    def close(self, status: str = "FINISHED") -> None:
        """End the trackers' runs: a finished run (``FINISHED``) uploads ``RUN_FILES`` first; a
        stopped one (``KILLED``: it resumes later) or a failed one (``FAILED``) does not."""
        if self.trackers is not None:
            self.trackers.finish([self.run_dir / name for name in RUN_FILES] if status == "FINISHED" else [], status)
