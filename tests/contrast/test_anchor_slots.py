"""Many-class datasets: anchors only for the classes present (``max_anchors``), with the same loss."""

import torch
import torch.nn.functional as F

from contextrast_cli.config import ContrastConfig
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.contrast.sampling import AnchorSlots


def test_slots_follow_pixel_counts():
    # class 5: 6 px, class 2: 4 px, class 0: 3 px, class 4: 1 px, class 1 and 3 absent, 2 ignored
    target = torch.tensor([[5, 5, 5, 5, 5, 5, 2, 2], [2, 2, 0, 0, 0, 4, 255, 255]])[None]
    slots = AnchorSlots.of(target, 6, capacity=3)
    assert slots.slot_of.tolist() == [2, 3, 1, 3, 3, 0]  # 5 -> 0, 2 -> 1, 0 -> 2, the rest -> 3 (none)
    assert int(slots.dropped) == 1  # class 4 is present but gets no anchor
    assert slots.relabel(target).tolist() == [[[0, 0, 0, 0, 0, 0, 1, 1], [1, 1, 2, 2, 2, 3, 255, 255]]]
    roomy = AnchorSlots.of(target, 6, capacity=5)
    assert int(roomy.dropped) == 0 and sorted(roomy.slot_of.tolist())[:4] == [0, 1, 2, 3]


def layer_inputs(num_classes: int, present: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.tensor(present)[torch.randint(len(present), (2, 16, 24), generator=generator)]
    target[:, :2] = 255
    logits = torch.randn(2, num_classes, 16, 24, generator=generator, dtype=torch.float64)
    feats = [F.normalize(torch.randn(2, 8, 16 // s, 24 // s, generator=generator, dtype=torch.float64), dim=1)
             .requires_grad_() for s in (1, 2, 4, 8)]
    return feats, logits, target


def criterion(max_anchors: int, in_channels=(8, 8, 8, 8), num_classes: int = 150):
    cfg = ContrastConfig(method="contextrast", max_anchors=max_anchors, max_positives=10**6, max_negatives=10**6)
    loss = build_criterion(cfg, list(in_channels), num_classes)
    loss.heads = torch.nn.ModuleList(torch.nn.Identity() for _ in loss.layers)  # the features are the embeddings
    return loss


def test_the_loss_is_the_same_with_anchors_only_for_present_classes():
    """150 classes of which 5 are present: 8 anchor slots give the loss and gradients of 150 anchors
    (float64; sampling caps above every count, so every pixel is sampled either way)."""
    feats, logits, target = layer_inputs(150, [3, 17, 42, 99, 149])
    results = []
    for max_anchors in (8, 150):
        for f in feats:
            f.grad = None
        terms = criterion(max_anchors)(feats, logits, target)
        loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
        loss.backward()
        results.append((terms, [f.grad.clone() for f in feats]))
    (slotted, slotted_grads), (full, full_grads) = results
    assert float(slotted["ccl_dropped"]) == 0 and "ccl_dropped" not in full
    for key, value in full.items():
        assert torch.allclose(slotted[key].double(), value.double(), rtol=1e-10, atol=1e-12), key
    for a, b in zip(slotted_grads, full_grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert float(full["ccl_l1_classes"]) == 5


def test_more_classes_present_than_slots_drops_the_rarest():
    feats, logits, target = layer_inputs(150, [3, 17, 42, 99, 149])
    target[0, 2:4] = 7  # a sixth class, 48 px (the others about 125 each)
    terms = criterion(4)(feats, logits, target)
    assert float(terms["ccl_dropped"]) == 2 and float(terms["ccl_l1_classes"]) == 4
    assert all(torch.isfinite(v) for v in terms.values())
