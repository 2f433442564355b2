"""Experiment trackers beside ``metrics.jsonl``: TensorBoard, MLflow and Weights & Biases
(``train.loggers``). Each receives the resolved config (MLflow and W&B as flattened parameters,
TensorBoard as text), every logged term and validation metric at its iteration, and at the end the
run's files (MLflow and W&B as artifacts, TensorBoard its figures as images and the rest as text).

A tracker is the main process's only; one that fails while the run is training (a server down,
a full disk) costs a warning line and itself, never the run. A missing package is refused
before training starts, naming the extra to install. A resumed run continues the same MLflow /
W&B run: their ids travel in ``last.pt`` (``Trackers.ids``).
"""

import importlib
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from contextrast_cli.errors import ConfigError

def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoard:
    """Event files in ``<run>/tensorboard/``: the config as text (TEXT tab), every metric as a scalar,
    and when the run ends its figures as images (IMAGES tab: ``files/curves.png`` ...) and its other
    files as text. ``purge_step`` hides what a resumed run logs again."""

    def __init__(self, run_dir: Path, purge_step: int | None, config: dict | None = None) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        self.run_id, self.step = None, purge_step or 0
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge_step)
        if config is not None:
            self.writer.add_text("config", _code(yaml.safe_dump(config, sort_keys=False), "yaml"), self.step)
            self.writer.flush()

    def metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.step = max(self.step, step)
        self.writer.flush()

    def artifacts(self, paths: list[Path]) -> None:
        """PNGs as images, the other files as text, at the run's last step, under ``files/<name>``."""
        import numpy as np
        from PIL import Image

        for path in map(Path, paths):
            if path.suffix.lower() == ".png":
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"files/{path.name}", pixels, self.step, dataformats="HWC")
            else:
                text = path.read_text(encoding="utf-8")
                self.writer.add_text(f"files/{path.name}", _code(text, path.suffix.lstrip(".")), self.step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


def _code(text: str, language: str) -> str:
    """Markdown for TensorBoard's text tab: a fenced block, so the lines and indentation stay."""
    return f"```{language}\n{text.rstrip()}\n```"


class MLflow:
    """One MLflow run per contextrast run, through ``MlflowClient`` (no global active run).

    The store: ``MLFLOW_TRACKING_URI`` when set, else ``./mlruns/`` (an SQLite file and the
    artifacts beside it; ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``). The
    experiment: ``MLFLOW_EXPERIMENT_NAME``, else the preset's name.
    """

    KEY = re.compile(r"[^\w\-. /]")  # the characters MLflow accepts in a metric / parameter name

    def __init__(self, name: str, run_name: str, params: dict[str, Any], tags: dict[str, str],
                 run_id: str | None) -> None:
        import logging

        from mlflow import MlflowClient

        for logger in ("mlflow", "alembic"):  # their INFO lines (creating the store's tables) are not ours to show
            logging.getLogger(logger).setLevel(logging.WARNING)
        uri, artifacts = os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            root = Path("mlruns").resolve()
            root.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()
        self.client = client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or name
            found = client.get_experiment_by_name(experiment)
            eid = found.experiment_id if found else client.create_experiment(experiment, artifacts)
            run_id = client.create_run(eid, run_name=run_name, tags=tags).info.run_id
            self.run_id = run_id
            self._batch(params=[(self.KEY.sub("_", k), str(v)[:6000]) for k, v in params.items()])
        else:  # a resumed run: the same MLflow run, running again
            client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _batch(self, metrics=(), params=()) -> None:
        from mlflow.entities import Metric, Param

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v, step in metrics]
        params = [Param(k, v) for k, v in params]
        for start in range(0, len(params), 100):  # MLflow's batch limits: 100 parameters, 1000 metrics
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def metrics(self, values: dict[str, float], step: int) -> None:
        self._batch(metrics=[(self.KEY.sub("_", k), v, step) for k, v in values.items()])

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class WandB:
    """One W&B run per contextrast run (``wandb.init`` with the stored id and ``resume="allow"``).
    ``WANDB_MODE``, ``WANDB_PROJECT`` (default: the preset's name) and the other ``WANDB_*``
    variables are W&B's own; the run's files go to ``<run>/wandb/``. Ablation runs are grouped by
    their ablation and tagged ``key=value`` with their axis values and seed."""

    def __init__(self, name: str, run_dir: Path, params: dict[str, Any], tags: dict[str, str],
                 run_id: str | None) -> None:
        import wandb

        self.run_dir = Path(run_dir)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or name, dir=str(self.run_dir),
                              name=f"{name}/{self.run_dir.name}", config=params, id=run_id, resume="allow",
                              group=tags.get("ablation"), tags=[f"{k}={v}"[:64] for k, v in tags.items()],
                              reinit="create_new", settings=wandb.Settings(console="off"))
        self.run_id = self.run.id

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:  # under files/<run folder>/: W&B's own config.yaml lives in files/
            self.run.save(str(path), base_path=str(self.run_dir.parent), policy="now")

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def _require(kind: str) -> None:
    try:
        importlib.import_module(kind)
    except ImportError:
        raise ConfigError(f"train.loggers includes {kind} but the {kind} package is not installed: "
                          f"pip install 'contextrast[{kind}]' (or remove {kind} from train.loggers)") from None


class Trackers:
    """The run's trackers, each called through ``_each``: an exception costs that tracker (one
    warning line through ``warn``), not the run.

    Args:
        kinds: ``train.loggers``.
        name: the preset's name (MLflow experiment, W&B project).
        run_dir: the run folder.
        config: the resolved config (``Config.to_dict()``), logged as flattened parameters.
        tags: extra tags (an ablation's axis values and seed).
        ids: tracker run ids from ``last.pt`` (a resumed run continues them).
        purge_step: TensorBoard's, for a resumed run.

    Raises:
        ConfigError: a tracker's package is not installed.
    """

    def __init__(self, kinds: list[str], name: str, run_dir: Path, config: dict, tags: dict[str, str] | None = None,
                 ids: dict | None = None, purge_step: int | None = None,
                 warn: Callable[[str], None] = print) -> None:
        for kind in kinds:
            _require(kind)
        self.warn, self.active = warn, {}
        ids, tags, params = ids or {}, {"run": Path(run_dir).name, **(tags or {})}, flatten(config)
        makers = {"tensorboard": lambda: TensorBoard(run_dir, purge_step, config),
                  "mlflow": lambda: MLflow(name, f"{name}/{Path(run_dir).name}", params, tags, ids.get("mlflow")),
                  "wandb": lambda: WandB(name, run_dir, params, tags, ids.get("wandb"))}
        for kind in kinds:
            self._each(kind, lambda _t, kind=kind: self.active.__setitem__(kind, makers[kind]()), starting=True)

    @property
    def ids(self) -> dict[str, str]:
        """Tracker run ids to store in ``last.pt``."""
        return {kind: t.run_id for kind, t in self.active.items() if t.run_id is not None}

    def _each(self, kind: str, call: Callable, starting: bool = False) -> None:
        try:
            call(None if starting else self.active[kind])
        except Exception as exc:  # noqa: BLE001 - a tracker never stops training
            self.active.pop(kind, None)
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            self.warn(f"warning: {kind} logging stopped ({why}); training goes on, metrics.jsonl has every record")

    def metrics(self, values: dict[str, float], step: int) -> None:
        for kind in list(self.active):
            self._each(kind, lambda t: t.metrics(values, step))

    def finish(self, paths: list[Path], status: str = "FINISHED") -> None:
        """Upload ``paths`` (those that exist) as artifacts, then end every tracker's run with
        ``status``: FINISHED, KILLED (stopped; it resumes later) or FAILED (MLflow's names)."""
        present = [p for p in paths if Path(p).is_file()]
        for kind in list(self.active):
            if present:
                self._each(kind, lambda t: t.artifacts(present))
            if kind in self.active:
                self._each(kind, lambda t: t.close(status))
        self.active = {}
