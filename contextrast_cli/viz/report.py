"""An evaluation's files for people to look at: ``per_class.csv`` (``evaluation.writers``) and
``confusion.png`` (``viz.charts``), written by ``evaluate --report DIR`` and by training at each
validation, into its run folder beside ``curves.png``."""

from pathlib import Path

from contextrast_cli.evaluation.writers import write_per_class_csv


def write_report(metrics: dict, folder: Path, title: str = "") -> str | None:
    """Write ``folder/per_class.csv`` and ``folder/confusion.png`` of ``evaluate_split``'s metrics.

    Returns:
        A note when the figure could not be drawn (it costs the figure, not the caller), else None.

    Raises:
        OSError: ``per_class.csv`` cannot be written.
    """
    from contextrast_cli.viz.charts import confusion_chart

    folder = Path(folder)
    write_per_class_csv(metrics, folder / "per_class.csv")
    confusion = metrics["confusion"]
    try:
        confusion_chart(confusion["matrix"], confusion["classes"], folder / "confusion.png",
                        title or f"{metrics['split']} ({metrics['num_images']} images)")
    except Exception as exc:  # noqa: BLE001  (matplotlib's own failures, a full disk)
        return f"note: confusion.png not drawn: {type(exc).__name__}: {exc}"
    return None
