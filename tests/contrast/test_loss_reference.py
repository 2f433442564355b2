"""The loss equals a plain float64 reference (tests/contrast/reference.py: per-class loops over
the samples it drew), values and gradients, with BANE on and off and with and without the
stop-gradient of the deep anchors. The 2-process case is in tests/train/test_distributed.py."""

import pytest
import torch
from torch import nn

from contextrast_cli.contrast import loss as loss_module
from contextrast_cli.contrast.grids import resize_labels
from contextrast_cli.contrast.loss import ContextrastLoss
from tests.contrast import reference

SETTINGS = dict(layers=(1, 2, 3), lambdas=(0.3, 0.6, 1.0), alpha=0.2, tau=0.15, anchor_weights=(0.6, 0.4),
                max_positives=7, max_negatives=9)


def capture(monkeypatch) -> list:
    """Record the (positives, negatives) every layer draws (the per-layer view of the samples)."""
    drawn = []
    real = loss_module.sample_stacked

    def record(*args, **kwargs):
        samples = real(*args, **kwargs)
        drawn.extend(samples.layer(index) for index in range(len(samples.layout.shapes)))
        return samples

    monkeypatch.setattr(loss_module, "sample_stacked", record)
    return drawn


def inputs(seed: int = 0, dominated: bool = False):
    """Three float64 maps (B=2, D=5) at 12x16, 6x8, 3x4; 6 classes with void; a prediction with
    errors. ``dominated``: class 0 holds most of every layer (anchor 0's top-up runs past the pool)."""
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(2, 5, 12 // s, 16 // s, generator=generator, dtype=torch.float64) for s in (1, 2, 4)]
    target = torch.randint(0, 6, (2, 12, 16), generator=generator)
    if dominated:
        target = torch.where(torch.rand(2, 12, 16, generator=generator) < 0.85, 0, target)
    target[0, :3, :5] = 255
    target[1, 7:, 10:] = 2  # a large region: BANE's error regions have an inside
    pred = target.clamp_max(5).roll(2, 2)
    pred[:, 4:9, 3:8] = 4
    logits = torch.nn.functional.one_hot(pred, 6).permute(0, 3, 1, 2).double()
    return features, logits, target


@pytest.mark.parametrize("bane", [0.5, None], ids=["bane", "random-negatives"])
@pytest.mark.parametrize("stop_grad", [False, True], ids=["grad-through-deep-anchors", "stop-grad"])
@pytest.mark.parametrize("static_slots", [True, False], ids=["static-slots", "slots-sized-to-the-batch"])
@pytest.mark.parametrize("dominated", [False, True], ids=["mixed", "one-class-dominates"])
def test_the_loss_equals_a_plain_float64_reference(bane, stop_grad, static_slots, dominated, monkeypatch):
    features, logits, target = inputs(dominated=dominated)
    criterion = ContextrastLoss(6, (5, 5, 5), bane_ratio=bane, anchor_stop_grad=stop_grad, static_slots=static_slots,
                                **SETTINGS).double()
    criterion.heads = nn.ModuleList(nn.Identity() for _ in range(3))  # the embeddings are the maps themselves
    drawn = capture(monkeypatch)
    ours = [f.clone().requires_grad_() for f in features]
    terms = criterion(ours, logits, target)
    total = sum(terms[f"loss_ccl_l{i}"] for i in (1, 2, 3))
    total.backward()
    assert len(drawn) == 3 and sum(int(neg.bane.valid.sum()) for _, neg in drawn) > (0 if bane else -1)
    spilled = sum(int(neg.spill.valid.sum()) for _, neg in drawn)
    assert spilled == 0 if not dominated else (spilled > 0 or bane)  # the top-up past the pool took part
    if bane:
        assert all(int(neg.bane.valid.sum()) > 0 for _, neg in drawn[:2])  # BANE picks took part
    theirs = [f.clone().requires_grad_() for f in features]
    labels = [resize_labels(target, f.shape[-2:]) for f in features]
    samples = [reference.samples_of(pos, neg) for pos, neg in drawn]
    expected = reference.total_loss(theirs, labels, samples, 6, alpha=0.2, lambdas=(0.3, 0.6, 1.0), tau=0.15,
                                    w_low=0.6, w_high=0.4, stop_grad=stop_grad)
    expected.backward()
    assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-10, abs=1e-12)
    for got, want in zip(ours, theirs):
        assert want.grad.abs().sum() > 0
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10, atol=1e-10)
