"""The networks of issue 35 (SegFormer MiT-B0/B1, UPerNet on Swin-T, DeepLabV3+ on MobileNetV2):
documented taps, Contextrast and Contextrast++ steps with finite terms, bit-exact resume.

(Sizes, every-parameter and ONNX export checks run for them with every other network:
tests/models/test_hrnet.py and tests/test_export.py parametrise over tests/models/small.py.)
"""

import json
import math

import pytest
import torch

from contextrast_cli.config import ModelConfig, resolve_config
from contextrast_cli.models.checkpoint import load_checkpoint
from contextrast_cli.models.registry import build_model
from contextrast_cli.train.resume import plan_start
from contextrast_cli.train.trainer import Trainer
from tests.conftest import tiny_overrides
from tests.models.small import DOCUMENTED_TAPS, SMALL_MODELS

NEW = ["deeplabv3plus-mobilenetv2", "segformer", "upernet"]
FULL_SIZE = {
    "deeplabv3plus-mobilenetv2": ModelConfig(name="deeplabv3plus", backbone="mobilenetv2_100", output_stride=32),
    "segformer": ModelConfig(name="segformer", backbone="mit-b0"),
    "segformer-b1": ModelConfig(name="segformer", backbone="mit-b1"),
    "upernet": ModelConfig(name="upernet", backbone="swin_tiny_patch4_window7_224", options={"img_size": [512, 1024]}),
}


@pytest.mark.parametrize("key", sorted(FULL_SIZE))
def test_full_size_taps_have_the_documented_strides_and_channels(key):
    with torch.device("meta"):
        model = build_model(FULL_SIZE[key], 19)
        out = model(torch.empty(2, 3, 512, 1024))
    channels, strides = DOCUMENTED_TAPS[key]
    assert (model.feature_channels, model.feature_strides) == (channels, strides)
    assert [tuple(f.shape[1:]) for f in out["features"]] == [(c, 512 // s, 1024 // s) for c, s in zip(channels, strides)]


def test_segformer_b0_has_the_papers_size():
    """SegFormer Table 1: MiT-B0 3.7M parameters (encoder + decoder, 19 classes: 3.8M)."""
    with torch.device("meta"):
        model = build_model(FULL_SIZE["segformer"], 19)
    assert abs(sum(p.numel() for p in model.backbone.parameters()) - 3.32e6) < 0.05e6
    assert abs(sum(p.numel() for p in model.parameters()) - 3.72e6) < 0.1e6


def small_run(key: str, tmp_path, method: str, iterations: int = 2) -> dict:
    base = resolve_config("toy", overrides=tiny_overrides(tmp_path, iterations) + [f"contrast.method={method}"]).to_dict()
    base["model"] = SMALL_MODELS[key].model_dump(mode="json")
    return base


@pytest.mark.parametrize("method", ["contextrast", "contextrast++"])
@pytest.mark.parametrize("key", NEW)
def test_contrastive_steps_have_finite_terms(key, method, tmp_path):
    result = Trainer(resolve_config(base=small_run(key, tmp_path, method))).run()
    steps = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
             if '"loss_ce"' in line]
    assert len(steps) == 2
    terms = {k for k in steps[0] if k.startswith("loss_")}
    assert {"loss_ce", "loss_ccl_l1", "loss_ccl_l4"} <= terms
    if method == "contextrast++":
        assert any(k.startswith("loss_aa") for k in terms), terms
    assert all(math.isfinite(step[k]) for step in steps for k in terms)


@pytest.mark.parametrize("key", NEW)
def test_resume_is_bit_exact(key, tmp_path):
    """4 iterations straight, then again from the iteration-2 checkpoint: the same last.pt tensors."""
    base = small_run(key, tmp_path, "contextrast", iterations=4)
    base["train"]["keep_checkpoints"] = 4
    straight = Trainer(resolve_config(base=base)).run()
    reference = load_checkpoint(straight.run_dir / "last.pt")
    start = plan_start(None, None, [], {}, resume=straight.run_dir / "iter_000002.pt")
    assert start.resume["iteration"] == 2
    Trainer(start.cfg, resume=start.resume, run_dir=start.run_dir).run()
    resumed = load_checkpoint(straight.run_dir / "last.pt")
    assert resumed["iteration"] == 4
    different = [k for k, v in reference["model"].items() if not torch.equal(v, resumed["model"][k])]
    assert different == []
    assert any(not torch.equal(v, load_checkpoint(straight.run_dir / "iter_000002.pt")["model"][k])
               for k, v in reference["model"].items())  # the last two steps changed the network


@pytest.mark.parametrize("key", NEW)
def test_ddp_over_two_processes_trains_it(key, tmp_path):
    """``contextrast train`` under torchrun (2 gloo processes, the global batch split) trains the network
    with Contextrast: finite terms, a checkpoint from rank 0 (that DDP steps equal one process's is
    asserted on DeepLabV3+ in tests/train/test_distributed.py; nothing here is network-specific)."""
    from tests.train.test_torchrun import finish, launch

    model = SMALL_MODELS[key]
    sets = tiny_overrides(tmp_path, 2) + ["contrast.method=contextrast", "train.batch_size=4",
                                          f"model={json.dumps(model.model_dump(mode='json'))}"]
    code, output = finish(launch(tmp_path / "markers", [], ["train", "--preset", "toy",
                                                            *[a for s in sets for a in ("--set", s)]]))
    assert code == 0, output[-3000:]
    (run_dir,) = (tmp_path / "runs" / "toy").iterdir()
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["iteration"] == 2 and payload["initial_weights"] == "scratch"
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss_ce"' in line]
    assert len(steps) == 2 and all(math.isfinite(s["loss_ccl_l4"]) and math.isfinite(s["loss_ce"]) for s in steps)
