"""The training loop: files written, resume equals an uninterrupted run, safe checkpoints."""

import json

import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.engine.checkpoint import (load_checkpoint, model_from_checkpoint,
                                               newest_checkpoint)
from contextrast_cli.engine.evaluator import evaluate_checkpoint
from contextrast_cli.engine.reporting import Reporter
from contextrast_cli.engine.trainer import Interrupted, Trainer, poly_factor
from contextrast_cli.errors import CheckpointError
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
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt"} <= files
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["iteration"] for r in records if "mIoU" in r] == [2, 4]
    payload = load_checkpoint(result.run_dir / "last.pt")
    assert payload["iteration"] == 4 and payload["dataset"]["classes"][0] == "sky"
    assert payload["normalization"]["mean"] == list(tiny_config.data.mean)
    assert payload["config"] == tiny_config.to_dict()
    # evaluation from the checkpoint alone reproduces the loop's own validation
    best = load_checkpoint(result.run_dir / "best.pt")
    metrics = evaluate_checkpoint(result.run_dir / "best.pt", device="cpu")
    assert metrics["mIoU"] == pytest.approx(best["metrics"]["mIoU"], abs=1e-9)
    assert newest_checkpoint(tiny_config.train.output_dir) == result.run_dir / "best.pt"


class _CtrlCAt(Reporter):
    """Presses Ctrl-C after ``iteration`` steps."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def step(self, iteration, stats):
        if iteration == self.iteration:
            raise KeyboardInterrupt


def test_ctrl_c_then_resume_matches_uninterrupted_run(tmp_path):
    check_resume_matches_uninterrupted_run(tmp_path, [], atol=1e-6)


def check_resume_matches_uninterrupted_run(tmp_path, overrides: list[str], atol: float) -> None:
    """Ctrl-C at iteration 3 of 4, resume: the weights equal an uninterrupted run's within
    ``atol`` (tests/gpu runs it on CUDA)."""
    def config(path):
        return resolve_config("toy", overrides=tiny_overrides(path, 4) + overrides)

    straight = Trainer(config(tmp_path / "a")).run()
    interrupted = Trainer(config(tmp_path / "b"), reporter=_CtrlCAt(3))
    with pytest.raises(Interrupted, match="interrupted at iteration 3; last.pt saved; resume with"):
        interrupted.run()
    payload = load_checkpoint(interrupted.run_dir)
    assert payload["iteration"] == 3
    resumed = Trainer(resolve_config(base=payload["config"]), resume=payload,
                      run_dir=interrupted.run_dir).run()
    assert resumed.iterations == 4
    a = model_from_checkpoint(load_checkpoint(straight.run_dir / "last.pt")).state_dict()
    b = model_from_checkpoint(load_checkpoint(resumed.run_dir / "last.pt")).state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol), key


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
