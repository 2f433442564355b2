"""Confusion matrix and metric summaries against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from contextrast_cli.train.objective import cross_entropy
from contextrast_cli.evaluation.metrics import confusion_matrix, confusion_scores


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]


def test_summary_by_hand():
    conf = torch.tensor([[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    metrics = confusion_scores(conf, ("a", "b", "c", "d"))
    # IoU_a = 1/(2+2-1) = 1/3, IoU_b = 2/(3+3-2) = 1/2, IoU_c = 1/(2+2-1) = 1/3, d absent
    assert metrics["IoU"] == {"a": pytest.approx(1 / 3, abs=1e-6), "b": 0.5,
                              "c": pytest.approx(1 / 3, abs=1e-6), "d": None}
    assert metrics["mIoU"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3, abs=1e-6)
    assert metrics["aAcc"] == pytest.approx(4 / 7, abs=1e-6)
    assert metrics["mAcc"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3, abs=1e-6)


def test_cross_entropy_matches_torch_and_survives_all_ignore():
    logits = torch.randn(2, 5, 4, 6, requires_grad=True)
    target = torch.randint(0, 5, (2, 4, 6))
    target[0, 0] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(cross_entropy(logits, target), expected, atol=1e-6)
    empty = cross_entropy(logits, torch.full_like(target, 255))
    empty.backward()
    assert empty.item() == 0.0 and math.isfinite(logits.grad.abs().sum().item())
