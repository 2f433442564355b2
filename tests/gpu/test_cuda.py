"""Checks that need a CUDA GPU; skipped on machines without one (CI's has none).

The CPU tests simulate what they can of the GPU path. These run it: bfloat16 autocast,
cuDNN, the GPU's own random streams, and the sync-free loss under CUDA's own detector of
synchronising calls. Run them whenever a GPU is at hand (``benchmarks/gpu_session.sh``
runs them first):

    pytest -q tests/gpu
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.contrast.bane import bane_maps
from contextrast_cli.models.checkpoint import load_checkpoint, model_from_checkpoint
from contextrast_cli.runtime.device import setup_runtime
from contextrast_cli.train.step import training_step
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.models.registry import build_model
from tests.conftest import tiny_overrides
from tests.contrast.test_training import check_deferred_heads
from tests.train.test_trainer import check_resume_matches_uninterrupted_run
from tests.models.small import SMALL_MODELS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _contrast_cfg(**overrides):
    sets = ["contrast.method=contextrast"] + [f"contrast.{k}={v}" for k, v in overrides.items()]
    return resolve_config("toy", overrides=sets).contrast


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_training_step_never_synchronises(name):
    """A whole Contextrast step (bfloat16 autocast where native) under
    ``torch.cuda.set_sync_debug_mode("error")``: any call that waits for the GPU raises."""
    runtime = setup_runtime("cuda", "auto", seed=0, fixed_shapes=True)
    cfg = _contrast_cfg()
    model = build_model(SMALL_MODELS[name], 5).to(runtime.device).train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).to(runtime.device).train()
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=0.01, momentum=0.9)
    images = torch.rand(2, 3, 64, 96, device=runtime.device)
    labels = torch.randint(0, 5, (2, 64, 96), device=runtime.device)
    training_step(model, optimizer, images, labels, runtime.autocast, criterion)  # cuDNN timing, lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        terms = training_step(model, optimizer, images, labels, runtime.autocast, criterion)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(bool(torch.isfinite(v)) for v in terms.values())


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_deferred_heads_give_the_plain_gradients_on_cuda(name, monkeypatch):
    """The CPU test's float64 parity on the GPU: the deferred, factored head gradient equals
    plain autograd through the heads."""
    check_deferred_heads(name, "cuda", monkeypatch)


def test_loss_and_bane_match_the_cpu():
    """With caps above every count, sampling takes every pixel whatever the random stream, so
    the loss is the same number on both devices; BANE's maps are deterministic and equal."""
    torch.manual_seed(0)
    cfg = _contrast_cfg(max_positives=100000, max_negatives=100000)
    feats = [torch.nn.functional.normalize(torch.randn(2, 16, 24 // s, 32 // s), dim=1) for s in (1, 2, 4, 8)]
    target = torch.randint(0, 5, (2, 24, 32))
    target[:, :3] = 255
    logits = torch.randn(2, 5, 24, 32)
    criterion = build_criterion(cfg, [f.shape[1] for f in feats], logits.shape[1])
    criterion.heads = torch.nn.ModuleList(torch.nn.Identity() for _ in cfg.used_layers)
    values = {}
    for device in ("cpu", "cuda"):
        terms = criterion([f.to(device) for f in feats], logits.to(device), target.to(device))
        values[device] = {k: v.cpu() for k, v in terms.items()}
    for key, value in values["cpu"].items():
        assert torch.allclose(values["cuda"][key], value, rtol=1e-4, atol=1e-5), key
    pred = logits.argmax(1)
    cpu, gpu = bane_maps(pred, target, 5, 0.5), bane_maps(pred.cuda(), target.cuda(), 5, 0.5)
    assert torch.equal(gpu.error.cpu(), cpu.error) and torch.equal(gpu.selected.cpu(), cpu.selected)
    assert torch.allclose(gpu.distance.cpu(), cpu.distance)


def test_interrupted_cuda_run_resumes_like_an_uninterrupted_one(tmp_path):
    """SIGINT, then resume on the GPU: the checkpoint's CUDA random state and the weights carry
    over (float32: bfloat16 rounding would swamp the comparison; cuDNN and atomics make the
    GPU nondeterministic at the 1e-6 level)."""
    check_resume_matches_uninterrupted_run(
        tmp_path, ["train.device=cuda", "train.precision=fp32", "contrast.method=contextrast"], atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_run_is_finite(tmp_path, precision):
    """A short run in bfloat16 (GPUs with native bfloat16) and in float16 with the loss scaler
    (any GPU), evaluation included: every logged term finite, the scaler's state in last.pt
    for float16, and the checkpoint rebuilds the plain network."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bfloat16")
    overrides = tiny_overrides(tmp_path, 4) + ["train.device=cuda", f"train.precision={precision}",
                                               "contrast.method=contextrast"]
    trainer = Trainer(resolve_config("toy", overrides=overrides))
    assert trainer.runtime.precision == precision
    result = trainer.run()
    payload = load_checkpoint(result.run_dir / "last.pt")
    assert payload["contrast"]
    assert (payload["scaler"] is not None) == (precision == "fp16")
    model_from_checkpoint(payload)
    for line in (result.run_dir / "metrics.jsonl").read_text().splitlines():
        for key, value in json.loads(line).items():
            if isinstance(value, float):
                assert value == value and abs(value) != float("inf"), (key, value)


def test_one_gpu_torchrun_run(tmp_path):
    """``torchrun --nproc-per-node 1`` on one GPU: a world of one is a plain single-process run
    (no process group), so the same command line works on a laptop and under a launcher."""
    run = torchrun_train(tmp_path, 1)
    assert load_checkpoint(run / "last.pt")["iteration"] == 4


def test_two_gpu_torchrun_run_with_sync_batchnorm(tmp_path):
    """Two processes on two GPUs (NCCL, SyncBatchNorm, synchronised anchors): the run finishes
    and its checkpoint holds plain BatchNorm (a network that loads anywhere)."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    run = torchrun_train(tmp_path, 2)
    model_from_checkpoint(load_checkpoint(run / "last.pt"))


def torchrun_train(tmp_path, processes: int) -> Path:
    """``torchrun --standalone --nproc-per-node N -m contextrast_cli train`` of the tiny toy run on
    the GPU(s); its run folder."""
    root = Path(__file__).resolve().parents[2]
    sets = tiny_overrides(tmp_path, 4) + ["train.device=cuda", "train.batch_size=2", "contrast.method=contextrast"]
    command = ["torchrun", "--standalone", f"--nproc-per-node={processes}", "-m", "contextrast_cli", "train",
               "--preset", "toy", *[a for item in sets for a in ("--set", item)]]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run,) = (tmp_path / "runs" / "toy").iterdir()
    return run


def test_boundary_metrics_and_slide_inference_match_the_cpu():
    from contextrast_cli.config import EvalConfig
    from contextrast_cli.evaluation.boundary import BoundaryMeter
    from contextrast_cli.evaluation.inference import predict_probs

    torch.manual_seed(0)
    target = torch.randint(0, 5, (2, 6, 8)).repeat_interleave(12, 1).repeat_interleave(12, 2)  # blocky maps
    pred = target.roll(3, 2)
    cpu, gpu = BoundaryMeter(5), BoundaryMeter(5, device="cuda")
    cpu.update(pred, target)
    gpu.update(pred.cuda(), target.cuda())
    assert torch.equal(cpu.counts, gpu.counts.cpu())
    model = build_model(resolve_config("toy").model, 8, (0.5,) * 3, (0.25,) * 3).eval()
    images = torch.rand(1, 3, 97, 131)
    cfg = EvalConfig(mode="slide", crop=(64, 64), stride=(40, 40), scales=(1.0, 0.75), flip=True)
    on_cpu = predict_probs(model, images, cfg)
    on_gpu = predict_probs(model.cuda(), images.cuda(), cfg).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-4)
