"""Experiment trackers (``train.loggers``): what MLflow and W&B hold, read back with their own
client / from their own run files; a resumed run continues the same tracker run; a missing
package and a failing tracker."""

import io
import json
import struct
import sys
from pathlib import Path

import pytest
import yaml

from contextrast_cli.config import resolve_config
from contextrast_cli.errors import ConfigError
from contextrast_cli.models.checkpoint import load_checkpoint
from contextrast_cli.train.resume import load_resumable
from contextrast_cli.train.trainer import Trainer
from tests.conftest import invoke, one_line_error, tiny_overrides


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _config(tmp_path, *extra, iterations=4):
    return resolve_config("toy", overrides=[*tiny_overrides(tmp_path, iterations), *extra])


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh working folder (the default store is ./mlruns/) and no MLflow settings from outside."""
    pytest.importorskip("mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    from mlflow import MlflowClient

    return lambda: MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def test_mlflow_gets_the_config_every_metric_at_its_iteration_and_the_run_files(tmp_path, mlflow_store):
    cfg = _config(tmp_path, "train.loggers=[mlflow]")
    result = Trainer(cfg, tags={"seed": "0", "axis.contrast.method": "contextrast"}).run()
    client = mlflow_store()
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == f"toy/{result.run_dir.name}"
    assert run.data.tags["seed"] == "0" and run.data.tags["axis.contrast.method"] == "contextrast"
    params = run.data.params
    assert params["train.iterations"] == "4" and params["contrast.method"] == "contextrast"
    assert params["data.crop_size"] == "[32, 48]" and params["optim.lr"] == str(cfg.optim.lr)
    records = _records(result.run_dir)
    losses = {r["iteration"]: r["loss"] for r in records if "loss" in r}
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == len(losses) == 4 and {m.step: m.value for m in history} == pytest.approx(losses)
    mious = {r["iteration"]: r["mIoU"] for r in records if "mIoU" in r}
    assert {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/mIoU")} == pytest.approx(mious)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/IoU/sky")] == [2, 4]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "curves.png", "validation.json", "per_class.csv", "confusion.png"} <= artifacts
    copy = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "down")))
    assert copy.read_text() == (result.run_dir / "config.yaml").read_text()
    assert load_checkpoint(result.run_dir / "last.pt")["trackers"] == {"mlflow": run.info.run_id}


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, mlflow_store):
    cfg = _config(tmp_path, "train.loggers=[mlflow]")
    first = Trainer(cfg).run()
    payload, run_dir = load_resumable(first.run_dir / "iter_000002.pt")  # as after a kill at iteration 3
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"iterations": 6})})
    Trainer(longer, resume=payload, run_dir=run_dir).run()
    client = mlflow_store()
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6]  # iterations 3 and 4 were trained (and logged) twice
    assert load_checkpoint(run_dir / "last.pt")["trackers"]["mlflow"] == run.info.run_id


def _wandb_records(run_file: Path) -> list:
    """The records of a W&B ``.wandb`` file: a LevelDB-style log (a 7-byte header, then 32 KiB
    blocks of chunks with a 7-byte header each: CRC, length, type FULL/FIRST/MIDDLE/LAST), each
    record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data, records, pending, offset = run_file.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header is padding
            offset += 32768 - offset % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if kind == 0:
            break
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _wandb_history(run_dir: Path) -> tuple[list[str], dict[int, dict], dict]:
    """The run ids, the history by step and the config, over every offline run of ``run_dir``."""
    ids, history, config = [], {}, {}
    for run_file in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in _wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.append(record.run.run_id)
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                history.setdefault(row.pop("_step"), {}).update(row)
    return ids, history, config


def test_wandb_offline_gets_the_config_every_metric_at_its_iteration_and_the_run_files(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    cfg = _config(tmp_path, "train.loggers=[wandb]")
    first = Trainer(cfg, tags={"seed": "1"}).run()
    run_dir = first.run_dir
    ids, history, config = _wandb_history(run_dir)
    assert len(set(ids)) == 1 and load_checkpoint(run_dir / "last.pt")["trackers"] == {"wandb": ids[0]}
    assert config["train.iterations"] == 4 and config["contrast.method"] == "contextrast"
    assert config["data.crop_size"] == [32, 48] and config["contrast.max_anchors"] is None
    records = _records(run_dir)
    assert {step: row["train/loss"] for step, row in history.items() if "train/loss" in row} == pytest.approx(
        {r["iteration"]: r["loss"] for r in records if "loss" in r})
    assert {step: row["val/mIoU"] for step, row in history.items() if "val/mIoU" in row} == pytest.approx(
        {r["iteration"]: r["mIoU"] for r in records if "mIoU" in r})
    (files,) = (run_dir / "wandb").glob("offline-run-*/files")
    saved = files / run_dir.name
    assert (saved / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()
    assert {"curves.png", "validation.json", "per_class.csv", "confusion.png"} <= {p.name for p in saved.iterdir()}
    # resumed: the same W&B run id, the later iterations added to its history
    payload, _ = load_resumable(run_dir / "last.pt")
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"iterations": 6})})
    Trainer(longer, resume=payload, run_dir=run_dir).run()
    ids, history, _ = _wandb_history(run_dir)
    assert len(ids) == 2 and set(ids) == {payload["trackers"]["wandb"]}
    assert {5, 6} <= {step for step, row in history.items() if "train/loss" in row}


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'contextrast\[wandb\]'"):
        Trainer(_config(tmp_path, "train.loggers=[wandb]"))
    result = invoke("train", "--preset", "toy", *[a for o in tiny_overrides(tmp_path) for a in ("--set", o)],
                    "--set", "train.loggers=[wandb]")
    one_line_error(result, 2, "train.loggers includes wandb but the wandb package is not installed", after_progress=True)


def test_a_failing_tracker_costs_a_warning_not_the_run(tmp_path, mlflow_store, monkeypatch):
    from contextrast_cli.train import trackers

    def full_disk(self, values, step):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trackers.MLflow, "metrics", full_disk)
    lines = []
    cfg = _config(tmp_path, "train.loggers=[mlflow, tensorboard]")
    trainer = Trainer(cfg)
    trainer.reporter.message = lines.append
    trainer.log.trackers.warn = lines.append
    result = trainer.run()
    assert result.iterations == 4 and len(_records(result.run_dir)) == 6  # 4 steps + 2 validations, all logged
    warnings = [line for line in lines if line.startswith("warning: mlflow")]
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "training goes on" in warnings[0]
    assert list(trainer.log.tracker_ids) == [] and (result.run_dir / "tensorboard").is_dir()


def test_train_tensorboard_is_still_read_as_a_logger(tmp_path):
    cfg = _config(tmp_path, "train.tensorboard=true", "train.loggers=[tensorboard, mlflow]")
    assert cfg.train.loggers == ["tensorboard", "mlflow"]
    old = yaml.safe_load(cfg.to_yaml())
    old["train"].pop("loggers")
    old["train"]["tensorboard"] = True  # a config.yaml from before train.loggers
    assert resolve_config(cfg.name, overrides=[]).train.loggers == []
    from contextrast_cli.config import Config

    assert Config.model_validate(old).train.loggers == ["tensorboard"]


def test_tensorboard_gets_the_config_as_text_and_the_figures_as_images(tmp_path):
    """Issue 37: TensorBoard had scalars only, while the README promises every tracker the config and
    the run's files. Read back with TensorBoard's own EventAccumulator, from `train` as typed."""
    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = [a for item in [*tiny_overrides(tmp_path), "train.loggers=[tensorboard]"] for a in ("--set", item)]
    result = invoke("train", "--preset", "toy", *args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs" / "toy").iterdir()
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    text = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in tags["tensors"]}
    config = text["config/text_summary"]
    assert config.startswith("```yaml") and "iterations: 4" in config and "method: contextrast" in config
    assert yaml.safe_load(config.strip("`").removeprefix("yaml")) == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert json.loads(text["files/validation.json/text_summary"].strip("`").removeprefix("json"))["iteration"] == 4
    assert "files/per_class.csv/text_summary" in text and "files/config.yaml/text_summary" in text
    for name in ("curves.png", "confusion.png"):
        (image,) = events.Images(f"files/{name}")
        assert image.step == 4
        logged = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        np.testing.assert_array_equal(logged, np.asarray(Image.open(run_dir / name).convert("RGB")))
