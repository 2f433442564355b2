"""The optimizer and schedule built from ``optim`` (issue 35: AdamW, linear schedule, head lr)."""

import pytest
import torch

from contextrast_cli.config import ModelConfig, OptimConfig
from contextrast_cli.models.registry import build_model
from contextrast_cli.train.objective import Objective
from contextrast_cli.train.optim import build_optimizer, build_scheduler


@pytest.fixture(scope="module")
def objective():
    return Objective(build_model(ModelConfig(name="segformer", backbone="mit-b0", options={"channels": 16}), 3))


def test_adamw_with_a_ten_times_head_and_a_linear_schedule(objective):
    cfg = OptimConfig(name="adamw", lr=6e-5, betas=(0.8, 0.99), weight_decay=0.01, schedule="linear",
                      warmup_iters=0, head_lr_mult=10.0)
    optimizer = build_optimizer(objective, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    encoder, head = optimizer.param_groups
    assert (encoder["lr"], encoder["betas"], encoder["weight_decay"]) == (6e-5, (0.8, 0.99), 0.01)
    assert head["lr"] == pytest.approx(6e-4)
    assert {id(p) for p in head["params"]} == {id(p) for p in objective.model.head.parameters()}
    assert len(encoder["params"]) + len(head["params"]) == len(list(objective.parameters()))
    scheduler = build_scheduler(optimizer, cfg, iterations=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([3e-5, 3e-4])  # (1 - 5/10) ** 1


def test_sgd_keeps_one_group_and_the_poly_schedule(objective):
    cfg = OptimConfig(lr=0.01, poly_power=0.9, warmup_iters=2)
    optimizer = build_optimizer(objective, cfg)
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["momentum"] == 0.9
    scheduler = build_scheduler(optimizer, cfg, iterations=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5)  # warm-up: (0 + 1) / 2
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.6 ** 0.9)
