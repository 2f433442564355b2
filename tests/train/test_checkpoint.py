"""Checkpoint format: the normalisation lives in the network, format-1 files still load;
interval checkpoints are pruned, best.pt only ever improves; warm-up of the contrastive term."""

import json

import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.train import trainer as trainer_module
from contextrast_cli.models.checkpoint import FORMAT, describe, load_checkpoint, model_from_checkpoint
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.models.registry import build_model
from tests.conftest import tiny_overrides
from tests.models.small import SMALL_MODELS

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def format_1(cfg, dataset, model) -> dict:
    """A checkpoint as contextrast 0.1.0 wrote it: no normalisation in the state dict (the data
    pipeline normalised), ``model.output_stride`` always present (8 by default, HRNet too)."""
    payload = {**describe(cfg, dataset), "format_version": 1, "iteration": 7, "contrast": None,
               "model": {k: v for k, v in model.state_dict().items() if k not in ("pixel_mean", "pixel_std")}}
    payload["config"]["model"]["output_stride"] = cfg.model.output_stride or 8
    payload["normalization"] = {"mean": list(MEAN), "std": list(STD)}
    return payload


@pytest.mark.parametrize("name", ["deeplabv3plus", "hrnet"])
def test_format_1_checkpoints_load_and_predict_as_before(name, tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path)).model_copy(update={"model": SMALL_MODELS[name]})
    dataset = type("D", (), {"name": "synthetic", "classes": tuple("abcde"), "ignore_index": 255,
                             "palette": [(i, i, i) for i in range(5)]})()
    torch.manual_seed(0)
    old = build_model(cfg.model, 5).eval()  # pixel_mean 0.485..., overwritten below: the old network had none
    old.set_normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    torch.save(format_1(cfg, dataset, old), tmp_path / "old.pt")
    payload = load_checkpoint(tmp_path / "old.pt")
    assert payload["format_version"] == 2 and payload["format"] == FORMAT
    assert payload["config"]["model"]["output_stride"] == (None if name == "hrnet" else 16)
    new = model_from_checkpoint(payload)
    image = torch.rand(2, 3, 64, 96)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        # format 1: the data pipeline normalised, the network took the result
        assert torch.allclose(new(image)["out"], old((image - mean) / std)["out"], atol=1e-5)
    assert torch.equal(new.pixel_mean.flatten(), torch.tensor(MEAN))


def test_old_last_pt_resumes(tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 3))
    first = Trainer(cfg)
    first.iteration = 2
    first.save_last()
    raw = torch.load(first.run_dir / "last.pt", weights_only=True)
    raw["format_version"] = 1
    raw["model"] = {k: v for k, v in raw["model"].items() if k not in ("pixel_mean", "pixel_std")}
    raw["config"]["model"]["output_stride"] = 32
    torch.save(raw, first.run_dir / "last.pt")
    payload = load_checkpoint(first.run_dir / "last.pt")
    result = Trainer(resolve_config(base=payload["config"]), resume=payload, run_dir=first.run_dir).run()
    assert result.iterations == 3


def test_interval_checkpoints_are_pruned_to_keep(tmp_path):
    overrides = tiny_overrides(tmp_path, 5) + ["train.checkpoint_interval=1", "train.eval_interval=5"]
    run_dir = Trainer(resolve_config("toy", overrides=overrides)).run().run_dir
    kept = sorted(p.name for p in run_dir.glob("iter_*.pt"))
    assert kept == ["iter_000004.pt", "iter_000005.pt"]
    last, newest = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "iter_000005.pt")
    assert newest["iteration"] == 5 and all(torch.equal(last["model"][k], v) for k, v in newest["model"].items())
    assert "optimizer" in load_checkpoint(run_dir / "iter_000004.pt")  # resumable, like last.pt
    none = Trainer(resolve_config("toy", overrides=overrides + ["train.keep_checkpoints=0",
                                                                f"train.output_dir={tmp_path / 'b'}"])).run()
    assert not list(none.run_dir.glob("iter_*.pt")) and (none.run_dir / "last.pt").is_file()


def test_best_pt_is_never_replaced_by_a_worse_miou(tmp_path, monkeypatch):
    scores = iter([0.5, 0.3, 0.6, 0.4, 0.55])

    def fake_evaluate(*args, **kwargs):
        return {"split": "val", "num_images": 4, "mIoU": next(scores), "aAcc": 0.5, "mAcc": 0.5, "IoU": {}, "Acc": {}}

    monkeypatch.setattr(trainer_module, "evaluate_split", fake_evaluate)
    overrides = tiny_overrides(tmp_path, 4) + ["train.eval_interval=1", "train.checkpoint_interval=1"]
    run_dir = Trainer(resolve_config("toy", overrides=overrides)).run().run_dir
    best = load_checkpoint(run_dir / "best.pt")
    assert (best["iteration"], best["best_miou"]) == (3, 0.6)
    # a resume from a last.pt older than best.pt (its own record says 0.5) must not let 0.55 replace 0.6
    payload = load_checkpoint(run_dir / "iter_000003.pt")
    payload["best_miou"] = 0.5
    cfg = resolve_config(base=payload["config"], overrides=["train.iterations=4"])
    Trainer(cfg, resume=payload, run_dir=run_dir).run()  # validates iteration 4 at 0.55
    best = load_checkpoint(run_dir / "best.pt")
    assert (best["iteration"], best["best_miou"]) == (3, 0.6)


def test_contrastive_term_waits_for_warmup(tmp_path):
    overrides = tiny_overrides(tmp_path, 3) + ["contrast.method=contextrast", "contrast.warmup_iters=2"]
    run_dir = Trainer(resolve_config("toy", overrides=overrides)).run().run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {r["iteration"]: r for r in records if "loss" in r}
    assert [("loss_ccl_l4" in steps[i]) for i in (1, 2, 3)] == [False, False, True]
    assert steps[1]["loss"] == pytest.approx(steps[1]["loss_ce"])
    assert steps[3]["loss"] == pytest.approx(steps[3]["loss_ce"] + sum(steps[3][f"loss_ccl_l{i}"] for i in (1, 2, 3, 4)))
