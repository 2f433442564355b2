"""No (classes x pixels) tensor: at K = 150, B = 2, 128x128 the loss's peak allocation over one
forward and backward stays below what a single (K, P) float32 tensor would take, P the pixels of
its largest layer (32x32 per image). Measured with torch's profiler (allocations and frees in
time order), on the CPU."""

import pytest
import torch
from torch import nn

from contextrast_cli.contrast import loss as loss_module
from contextrast_cli.contrast.loss import ContextrastLoss

K, B, D, SIZE = 150, 2, 4, 128
STRIDES = (4, 8, 16, 32)


def peak_bytes(fn) -> int:
    """The highest net allocation (bytes) while ``fn`` runs: every operator's own allocations at its
    start, every free as the profiler records it, in time order."""
    with torch.profiler.profile(profile_memory=True, activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    changes = sorted(((e.time_range.start, e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage)
                      for e in prof.events()), key=lambda item: item[0])
    current = peak = 0
    for _, change in changes:
        current += change
        peak = max(peak, current)
    return peak


def one_step(static_slots: bool | None = True):
    """A forward and backward of the loss (identity heads: the bound is about the loss itself;
    small D and caps so that what legitimately grows with the pixels and the pool stays small)."""
    torch.manual_seed(0)
    features = [torch.randn(B, D, SIZE // s, SIZE // s, requires_grad=True) for s in STRIDES]
    target = torch.randint(0, K, (B, SIZE, SIZE))
    logits = torch.randn(B, K, SIZE, SIZE)
    criterion = ContextrastLoss(K, (D,) * 4, max_positives=8, max_negatives=8, static_slots=static_slots)
    criterion.heads = nn.ModuleList(nn.Identity() for _ in STRIDES)

    def step():
        terms = criterion(features, logits, target)
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
        assert float(terms["ccl_anchored"]) == K  # every class present has an anchor

    step()  # warm-up: first-call allocations are not the loss's
    return step


@pytest.mark.parametrize("static_slots", [True, False], ids=["static-slots", "slots-sized-to-the-batch"])
def test_the_peak_allocation_is_below_one_classes_by_pixels_tensor(static_slots):
    pixels = B * (SIZE // STRIDES[0]) ** 2  # 2048: the largest layer
    bound = K * pixels * 4  # bytes of one (K, P) float32 tensor: 1.2 MB
    assert peak_bytes(one_step(static_slots)) < bound


def test_the_measurement_sees_a_classes_by_pixels_tensor(monkeypatch):
    """The check can fail: the same step holding one (K, P) float tensor while it samples exceeds it."""
    real = loss_module.sample_stacked
    pixels = B * (SIZE // STRIDES[0]) ** 2

    def wasteful(*args, **kwargs):
        scores = torch.rand(K, pixels)  # what the old sampling made per layer
        samples = real(*args, **kwargs)
        samples.pos_counts = samples.pos_counts + scores.sum().mul(0).long()  # kept alive until here
        return samples

    monkeypatch.setattr(loss_module, "sample_stacked", wasteful)
    assert peak_bytes(one_step()) >= K * pixels * 4
