"""How the training loop tells a person what it is doing (rich, or nothing)."""

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


def percent(score: float | None) -> str:
    """A score (a fraction, as the files hold it) as everything printed shows it: ``28.11`` (percent)."""
    return "n/a" if score is None else f"{score * 100:.2f}"


class Reporter:
    """Silent base: the engine calls these hooks; subclasses display them."""

    def start(self, total: int, completed: int, description: str) -> None: ...

    def step(self, iteration: int, stats: dict | None) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


class RichReporter(Reporter):
    """A rich progress bar with loss, lr, it/s and ETA, plus printed messages."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} it/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self.task = None

    def start(self, total: int, completed: int, description: str) -> None:
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed,
                                           loss="-", lr="-", speed="-")

    def step(self, iteration: int, stats: dict | None) -> None:
        fields = {}
        if stats:
            fields = {"loss": f"{stats['loss']:.4f}", "lr": f"{stats['lr']:.2e}",
                      "speed": f"{stats['it_per_s']:.2f}"}
        self.progress.update(self.task, completed=iteration, **fields)

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def stop(self) -> None:
        self.progress.stop()
