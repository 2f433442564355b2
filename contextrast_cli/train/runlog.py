"""A run's record of itself: ``metrics.jsonl`` (every logged line and validation, without the
confusion matrix), ``curves.png``, ``per_class.csv`` and ``confusion.png`` (redrawn at each
validation: the latest validation's) and, with ``train.tensorboard``, TensorBoard event files in
``tensorboard/``. Written by the main process only."""

import json
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.errors import ConfigError


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
    """``metrics.jsonl`` + ``curves.png`` + optional TensorBoard events of one run folder.

    Args:
        resumed_at: the iteration a resumed run continues from: the records after it are dropped
            (``validation_redone``: its validation record too), so none is logged twice.

    Raises:
        ConfigError: ``tensorboard`` asked for without the tensorboard package installed.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = False, title: str = "", resumed_at: int | None = None,
                 validation_redone: bool = False) -> None:
        self.run_dir, self.title = Path(run_dir), title
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        if resumed_at is not None:  # records after the resumed iteration are logged again
            self.metrics.truncate(resumed_at, validation_redone)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("train.tensorboard: true needs the tensorboard package: "
                                  "pip install 'contextrast[tensorboard]' (or set train.tensorboard=false)") from None
            # purge_step hides the events a resumed run writes again (TensorBoard's own mechanism)
            purge = None if resumed_at is None else resumed_at + (0 if validation_redone else 1)
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)

    def write(self, record: dict) -> None:
        """Append ``record`` (it has an ``iteration``); validation records (with ``split``) go to
        TensorBoard under ``<split>/``, training ones under ``train/``."""
        self.metrics.write(record)
        if self.writer is not None:
            group = record.get("split", "train")
            for key, value in scalars({k: v for k, v in record.items() if k != "num_images"}).items():
                self.writer.add_scalar(f"{group}/{key}", value, record["iteration"])
            self.writer.flush()

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
        """Rewrite ``per_class.csv`` and ``confusion.png``; a note when they could not be written
        (as ``plot``: it costs the files, not the run)."""
        from contextrast_cli.viz.report import write_report

        try:
            title = f"{metrics['split']} ({metrics['num_images']} images), iteration {iteration}"
            return write_report(metrics, self.run_dir, f"{self.title}: {title}" if self.title else title)
        except Exception as exc:  # noqa: BLE001
            return f"note: per_class.csv not written: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
