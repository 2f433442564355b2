"""Contextrast wired into training: terms, diagnostics, checkpoints, and the CE baseline."""

import json
import math

import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.heads import build_projectors
from contextrast_cli.contrast.loss import contextrast_losses
from contextrast_cli.engine.checkpoint import load_checkpoint, model_from_checkpoint
from contextrast_cli.engine.losses import segmentation_losses
from contextrast_cli.engine.trainer import Trainer
from contextrast_cli.errors import CheckpointError
from contextrast_cli.models.registry import build_model
from tests.conftest import tiny_overrides


def test_method_none_is_exactly_cross_entropy(tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=none"])
    trainer = Trainer(cfg)
    assert trainer.projectors is None
    batch = next(trainer._batches())
    torch.manual_seed(0)
    terms = trainer._step(batch)
    assert set(terms) == {"loss", "loss_ce"} and torch.equal(terms["loss"], terms["loss_ce"])


def test_contextrast_terms_weights_and_diagnostics():
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=["contrast.method=contextrast"]).contrast
    model = build_model(resolve_config("toy").model, 4)
    projectors = build_projectors(model.feature_channels, cfg)
    images, target = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    outputs = model(images)
    terms = contextrast_losses(outputs["features"], outputs["out"], target, projectors, cfg)
    assert {f"loss_ccl_l{i}" for i in (1, 2, 3, 4)} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["ccl_l1_classes"] == 4  # all four classes present at stride 4
    # the deepest layer carries weight alpha * 1.0, the shallowest alpha * 0.1
    no_alpha = cfg.model_copy(update={"alpha": 1.0})
    torch.manual_seed(0)
    terms_1 = contextrast_losses(outputs["features"], outputs["out"], target, projectors, no_alpha)
    assert math.isclose(terms["loss_ccl_l4"].detach().item(), 0.1 * terms_1["loss_ccl_l4"].detach().item(), rel_tol=1e-5)
    sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in projectors.parameters())
    assert segmentation_losses(outputs, target)["loss_ce"].requires_grad


def test_contextrast_run_logs_and_checkpoint_drops_heads(tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=contextrast"])
    result = Trainer(cfg).run()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = records[0]
    assert {"loss_ccl_l1", "ccl_l4_bane", "ccl_l4_topup", "ccl_l1_pos_sim"} <= set(logged)
    assert math.isclose(logged["loss"], logged["loss_ce"] + sum(logged[f"loss_ccl_l{i}"] for i in (1, 2, 3, 4)),
                        rel_tol=1e-5)
    payload = load_checkpoint(result.run_dir / "last.pt")
    assert payload["contrast"] and all(k.split(".")[0].isdigit() for k in payload["contrast"])
    plain = model_from_checkpoint(payload)
    heads = sum(v.numel() for v in payload["contrast"].values())
    assert heads > 0 and set(plain.state_dict()) == set(payload["model"])


def test_resume_cannot_switch_method(tmp_path):
    result = Trainer(resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=none"])).run()
    payload = load_checkpoint(result.run_dir)
    cfg = resolve_config(base=payload["config"], overrides=["contrast.method=contextrast"])
    with pytest.raises(CheckpointError, match="resume with the same method"):
        Trainer(cfg, resume=payload, run_dir=result.run_dir)


def test_checkpointed_head_gives_the_plain_gradients():
    from contextrast_cli.contrast.heads import ProjectionHead

    torch.manual_seed(0)
    head = ProjectionHead(6, 6, 4).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    grads = []
    for checkpointed in (True, False):
        head.train()
        out = head(x) if checkpointed else head._project(x)
        grads.append(torch.autograd.grad((out * weights).sum(), [x, *head.parameters()]))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)
