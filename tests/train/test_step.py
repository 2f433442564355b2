"""The loss window between two log lines: each term's mean over the steps it took part in."""

import torch

from contextrast_cli.train.step import LossWindow


def terms(**values):
    return {key: torch.tensor(value) for key, value in values.items()}


def test_a_term_that_switches_on_mid_window_is_averaged_over_its_own_steps():
    """contrast.warmup_iters not a multiple of log_interval: the contrastive term is in 2 of 4 steps;
    its logged mean is its mean over those 2 (0.5), not its sum over the window's 4 steps (0.25)."""
    window = LossWindow()
    window.add(1, terms(loss=1.0, loss_ce=1.0))
    window.add(2, terms(loss=3.0, loss_ce=3.0))
    window.add(3, terms(loss=2.5, loss_ce=2.0, loss_ccl_l4=0.5, ccl_l4_classes=4.0))
    window.add(4, terms(loss=1.5, loss_ce=1.0, loss_ccl_l4=0.5, ccl_l4_classes=6.0))
    stats = window.flush()
    assert stats["loss"] == 2.0 and stats["loss_ce"] == 1.75
    assert stats["loss_ccl_l4"] == 0.5 and stats["ccl_l4_classes"] == 5.0
    window.add(5, terms(loss=2.0, loss_ce=1.5, loss_ccl_l4=0.25, ccl_l4_classes=2.0))
    assert window.flush()["loss_ccl_l4"] == 0.25  # a new window counts afresh
