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


def test_norms_and_position_tables_can_go_without_weight_decay():
    """mmsegmentation's ``decay_mult=0`` keys: every LayerNorm / BatchNorm parameter and Swin's
    relative position tables are in the undecayed groups, nothing else is."""
    model = build_model(ModelConfig(name="upernet", backbone="swin_tiny_patch4_window7_224",
                                    options={"channels": 16, "depths": [2, 2, 2, 1], "img_size": [64, 64]}), 3)
    objective = Objective(model)
    cfg = OptimConfig(name="adamw", lr=1e-4, weight_decay=0.05, head_lr_mult=10.0, no_decay_norms=True)
    groups = build_optimizer(objective, cfg).param_groups
    undecayed = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    names = {id(p): n for n, p in objective.named_parameters()}
    expected = {id(p) for n, p in objective.named_parameters()
                if ".norm" in n or "norm1" in n or "norm2" in n or "relative_position_bias_table" in n
                or any(isinstance(m, torch.nn.BatchNorm2d) and p is w for m in model.modules() for w in m.parameters())}
    assert undecayed == expected, sorted(names[i] for i in undecayed ^ expected)[:5]
    assert all(g["weight_decay"] == 0.05 for g in groups if not any(id(p) in undecayed for p in g["params"]))
    assert sorted(g["lr"] for g in groups) == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(objective.parameters()))
