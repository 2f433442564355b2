"""Run folders: ``<output_dir>/<preset>/<timestamp>/`` with config.yaml and metrics.jsonl."""

import json
import time
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.config import Config


def new_run_dir(cfg: Config) -> Path:
    """Create a fresh, uniquely named run folder and write the resolved config into it."""
    base = Path(cfg.train.output_dir) / cfg.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, suffix = base / stamp, 1
    while run_dir.exists():
        suffix += 1
        run_dir = base / f"{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    write_config(run_dir, cfg)
    return run_dir


def write_config(run_dir: Path, cfg: Config) -> None:
    """(Re)write the run's resolved ``config.yaml``."""
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())


class MetricsLog:
    """Append-only JSON lines; each record is flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        """All records (empty when the file does not exist)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
