"""The training loop: files written, resume equals an uninterrupted run, safe checkpoints."""

import json
import os
import signal

import cv2
import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.models.checkpoint import load_checkpoint
from contextrast_cli.evaluation.evaluator import evaluate_checkpoint
from contextrast_cli.train.reporting import Reporter
from contextrast_cli.train.runs import newest_checkpoint
from contextrast_cli.train.step import poly_factor
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.errors import CheckpointError, Interrupted
from tests.conftest import tiny_overrides


def test_poly_schedule_by_hand():
    factor = poly_factor(10, 0.9, warmup=0)
    assert factor(0) == 1.0 and factor(10) == 0.0
    assert factor(5) == pytest.approx(0.5 ** 0.9)
    warm = poly_factor(10, 1.0, warmup=4)
    assert warm(0) == pytest.approx(0.25 * 1.0) and warm(3) == pytest.approx(0.7)


def test_run_writes_self_describing_outputs(tiny_config):
    result = Trainer(tiny_config).run()
    files = {p.name for p in result.run_dir.iterdir()}
    assert files == {"config.yaml", "metrics.jsonl", "curves.png", "last.pt", "best.pt", "iter_000002.pt",
                     "iter_000004.pt", "per_class.csv", "confusion.png", "validation.json"}
    curves = cv2.imread(str(result.run_dir / "curves.png"))
    assert curves is not None and curves.shape[0] > 400 and curves.std() > 0
    confusion = cv2.imread(str(result.run_dir / "confusion.png"))
    assert confusion is not None and confusion.shape[0] >= 450 and confusion.std() > 0
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    # the table of the last validation, beside the curves; the matrix is in the checkpoint, not the log
    table = (result.run_dir / "per_class.csv").read_text().splitlines()
    last_iou = load_checkpoint(result.run_dir / "last.pt")["metrics"]["IoU"]
    assert [line.split(",")[0] for line in table[1:]] == list(last_iou)
    assert [line.split(",")[1] for line in table[1:]] == ["" if v is None else str(v) for v in last_iou.values()]
    assert all("confusion" not in r for r in records)
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["iteration"] for r in records if "mIoU" in r] == [2, 4]
    payload = load_checkpoint(result.run_dir / "last.pt")
    assert payload["iteration"] == 4 and payload["dataset"]["classes"][0] == "sky"
    assert payload["normalization"]["mean"] == list(tiny_config.data.mean)
    assert payload["config"] == tiny_config.to_dict()
    # evaluation from the checkpoint alone reproduces the loop's own validation, number for number
    last = load_checkpoint(result.run_dir / "last.pt")
    metrics = evaluate_checkpoint(result.run_dir / "last.pt", device="cpu")
    validated = [r for r in records if "mIoU" in r][-1]
    shared = ("mIoU", "aAcc", "mAcc", "IoU", "Acc", "boundary", "num_images")
    assert {k: metrics[k] for k in shared} == {k: validated[k] for k in shared} == {k: last["metrics"][k] for k in shared}
    assert metrics["boundary"]["mBIoU"] is not None
    # validation.json: the last validation in full (the confusion matrix included), as evaluate --json writes it
    written = json.loads((result.run_dir / "validation.json").read_text())
    assert written["iteration"] == 4 and written["mIoU"] == validated["mIoU"]
    assert written["confusion"] == last["metrics"]["confusion"]
    assert newest_checkpoint(tiny_config.train.output_dir) == result.run_dir / "best.pt"


def test_tensorboard_events_hold_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = resolve_config("toy", overrides=[*tiny_overrides(tmp_path), "train.tensorboard=true"])
    result = Trainer(cfg).run()
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [(r["iteration"], r["mIoU"]) for r in records if "mIoU" in r]
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("val/mIoU")] == val
    assert [e.step for e in events.Scalars("train/loss")] == [r["iteration"] for r in records if "loss" in r]
    assert "val/boundary/mBIoU" in events.Tags()["scalars"]


class _SignalAt(Reporter):
    """Delivers a real signal to this process after ``iteration`` steps (the handler only
    records it; the trainer stops after the step)."""

    def __init__(self, iteration: int, signum: int = signal.SIGINT) -> None:
        self.iteration, self.signum = iteration, signum

    def step(self, iteration, stats):
        if iteration == self.iteration:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_then_resume_matches_uninterrupted_run(tmp_path, signum, code):
    check_resume_matches_uninterrupted_run(tmp_path, [], atol=0, signum=signum, code=code)


def check_resume_matches_uninterrupted_run(tmp_path, overrides: list[str], atol: float,
                                           signum: int = signal.SIGINT, code: int = 130) -> None:
    """A signal at iteration 3 of 4, resume: the weights equal an uninterrupted run's within
    ``atol`` (tests/gpu runs it on CUDA)."""
    def config(path):
        return resolve_config("toy", overrides=tiny_overrides(path, 4) + ["train.checkpoint_interval=4"] + overrides)

    straight = Trainer(config(tmp_path / "a")).run()
    interrupted = Trainer(config(tmp_path / "b"), reporter=_SignalAt(3, signum))
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted, match="at iteration 3: stopped after the step in progress; last.pt saved") as info:
        interrupted.run()
    assert info.value.exit_code == code
    assert signal.getsignal(signum) == before  # the run's handler is gone again
    payload = load_checkpoint(interrupted.run_dir / "last.pt")
    assert payload["iteration"] == 3
    resumed = Trainer(resolve_config(base=payload["config"]), resume=payload,
                      run_dir=interrupted.run_dir).run()
    assert resumed.iterations == 4
    a = load_checkpoint(straight.run_dir / "last.pt")["model"]
    b = load_checkpoint(resumed.run_dir / "last.pt")["model"]
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=0, atol=atol), key


def test_float16_loss_scaler_state_is_saved_and_restored(tmp_path):
    """train.precision fp16 (meant for GPUs without bfloat16; it runs on the CPU too): the loss is
    scaled by a GradScaler whose state goes into last.pt and comes back on resume."""
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 3) + ["train.precision=fp16"])
    first = Trainer(cfg)
    assert first.runtime.amp_dtype == torch.float16 and first.scaler is not None
    result = first.run()
    saved = load_checkpoint(result.run_dir / "last.pt")
    assert saved["scaler"] == first.scaler.state_dict()
    assert saved["scaler"]["_growth_tracker"] + (saved["scaler"]["scale"] < 2.0 ** 16) > 0  # it counted steps
    resumed = Trainer(resolve_config(base=saved["config"], overrides=["train.iterations=5"]), resume=saved,
                      run_dir=result.run_dir)
    assert resumed.scaler.state_dict() == saved["scaler"]
    resumed.run()
    after = load_checkpoint(result.run_dir / "last.pt")
    assert after["iteration"] == 5 and after["scaler"] != saved["scaler"]
    assert all(torch.isfinite(v).all() for v in after["model"].values() if v.is_floating_point())


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "contextrast-checkpoint", "x": _Payload()}, evil, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="is not a loadable checkpoint"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()


def test_foreign_and_missing_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a contextrast checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="no best.pt found under"):
        newest_checkpoint(tmp_path)


def test_resume_from_an_older_checkpoint_drops_the_records_after_it(tmp_path):
    """Resuming from iter_000002.pt of a finished 4-iteration run (or after a SIGKILL) repeats
    iterations 3 and 4: metrics.jsonl, curves.png and TensorBoard then hold each iteration once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from contextrast_cli.train.resume import load_resumable

    cfg = resolve_config("toy", overrides=[*tiny_overrides(tmp_path), "train.tensorboard=true"])
    result = Trainer(cfg).run()
    payload, run_dir = load_resumable(result.run_dir / "iter_000002.pt")
    assert payload["iteration"] == 2
    Trainer(cfg, resume=payload, run_dir=run_dir).run()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["iteration"] for r in records if "mIoU" in r] == [2, 4]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val/mIoU")] == [2, 4]
