"""CCL anchors and the pixel-anchor loss against direct float64 evaluations of METHOD.md."""

import math

import pytest
import torch
import torch.nn.functional as F

from contextrast_cli.contrast.bane import BanePicks
from contextrast_cli.contrast.ccl import class_means, contextual_anchors, pixel_anchor_loss
from contextrast_cli.contrast.sampling import NegativeSelection, Positives, sample_positives, select_negatives


def reference_loss(anchors, emb, pos, neg, tau):
    """METHOD.md section 2.5 written out literally, in float64 Python loops."""
    terms = []
    for n, a in enumerate(anchors):
        if not pos[n]:
            continue
        inner = []
        for p in pos[n]:
            num = math.exp(float(a @ emb[p]) / tau)
            den = num + sum(math.exp(float(a @ emb[q]) / tau) for q in neg[n])
            inner.append(-math.log(num / den))
        terms.append(sum(inner) / len(inner))
    return sum(terms) / len(terms)


def samples(pos, bane, pool, topup, num_classes):
    """``Positives`` and a ``NegativeSelection`` from plain lists: pos[n] pixels of class n; bane[n]
    BANE picks of anchor n; the pool's pixels and, per anchor, the pool positions it takes."""
    def flat(lists):
        index = [p for items in lists for p in items]
        anchor = [n for n, items in enumerate(lists) for _ in items]
        return (torch.tensor(index + [0], dtype=torch.long), torch.tensor(anchor + [0], dtype=torch.long),
                torch.tensor([True] * len(index) + [False]), torch.tensor([len(items) for items in lists]))
    taken = torch.zeros(num_classes, len(pool), dtype=torch.bool)
    for n, positions in enumerate(topup):
        taken[n, positions] = True
    return Positives(*flat(pos)), NegativeSelection(None, BanePicks(*flat(bane)), torch.tensor(pool), taken)


def test_pixel_anchor_loss_equals_formula():
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(9, 4, dtype=torch.float64), dim=1)
    anchors = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    pos = [[0, 1, 2], [3], []]  # class 2 has no positive: left out of the mean
    bane = [[3, 4], [], [1]]
    pool = [5, 6, 0, 7]
    topup = [[0, 1], [2, 3], []]  # anchor 0: 3, 4 (BANE), 5, 6 (pool); anchor 1: 0, 7; anchor 2: 1
    neg = [[3, 4, 5, 6], [0, 7], [1]]
    positives, negatives = samples(pos, bane, pool, topup, 3)
    expected = reference_loss(anchors, emb, pos, neg, 0.1)
    ours = pixel_anchor_loss(anchors, emb.T[None], positives, negatives, tau=0.1)["loss"]
    assert ours.item() == pytest.approx(expected, abs=1e-12)
    ours32 = pixel_anchor_loss(anchors.half(), emb.T[None].half(), positives, negatives, tau=0.1)["loss"]
    assert ours32.dtype == torch.float32  # half inputs are computed in float32


def test_class_means_and_contextual_update():
    emb = torch.tensor([[1.0, 0], [3, 0], [0, 2], [5, 5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 255])
    means, counts = class_means(emb.T[None], labels[None], 3)
    assert counts.tolist() == [2, 1, 0]
    assert means.tolist() == [[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    deep = torch.tensor([[0.0, 1], [1, 0], [1, 1]], dtype=torch.float64)
    deep_counts = torch.tensor([4, 0, 2])
    shallow_anchor, deep_anchor = contextual_anchors([means, deep], [counts, deep_counts], 0.7, 0.3)
    # class 0 present at both: normalise(0.7 * (2, 0) + 0.3 * (0, 1)); class 1 absent deep: (0, 1)
    expected0 = torch.tensor([1.4, 0.3], dtype=torch.float64) / math.hypot(1.4, 0.3)
    assert torch.allclose(shallow_anchor[0], expected0)
    assert torch.allclose(shallow_anchor[1], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(deep_anchor[2], torch.tensor([1, 1], dtype=torch.float64) / math.sqrt(2))


def test_class_means_over_a_batch_of_images():
    torch.manual_seed(3)
    emb = torch.randn(3, 5, 40, dtype=torch.float64)  # (B, D, N)
    labels = torch.randint(0, 4, (3, 40))
    labels[1, :7] = 255
    means, counts = class_means(emb, labels, 4)
    pixels, flat = emb.transpose(1, 2).reshape(-1, 5), labels.reshape(-1)
    for k in range(4):
        assert counts[k] == (flat == k).sum()
        assert torch.allclose(means[k], pixels[flat == k].mean(0))


def test_stop_gradient_option():
    deep = torch.randn(2, 3, requires_grad=True)
    shallow = torch.randn(2, 3, requires_grad=True)
    counts = [torch.tensor([1, 1]), torch.tensor([1, 1])]
    contextual_anchors([shallow, deep], counts, 0.7, 0.3, stop_grad=True)[0].sum().backward()
    assert (deep.grad is None or not deep.grad.any()) and shallow.grad.abs().sum() > 0  # none through the deep term
    contextual_anchors([shallow, deep], counts, 0.7, 0.3, stop_grad=False)[0].sum().backward()
    assert deep.grad is not None and deep.grad.abs().sum() > 0


def layer_loss(emb, labels, num_classes, generator_seed=0):
    gen = torch.Generator().manual_seed(generator_seed)
    emb = emb.T.reshape(emb.shape[1], 2, -1).transpose(0, 1)  # (P, D) -> two images (2, D, P/2)
    means, counts = class_means(emb, labels.view(2, -1), num_classes)
    (anchors,) = contextual_anchors([means], [counts], 0.7, 0.3)
    positives = sample_positives(labels, num_classes, 1024, generator=gen)
    negatives = select_negatives(labels.view(2, -1), labels.view(2, -1), num_classes, 2048, None, generator=gen)
    return pixel_anchor_loss(anchors, emb, positives, negatives, 0.1)["loss"]


def test_permuting_class_ids_leaves_the_loss_unchanged():
    torch.manual_seed(1)
    emb = F.normalize(torch.randn(200, 8, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 4, (200,))
    labels[:10] = 255
    perm = torch.tensor([2, 0, 3, 1])
    permuted = torch.where(labels == 255, labels, perm[labels.clamp(max=3)])
    # all pixels fit under the caps, so sampling takes every pixel whatever the order
    assert layer_loss(emb, labels, 4).item() == pytest.approx(layer_loss(emb, permuted, 4).item(), rel=1e-6)


@pytest.mark.parametrize("case", ["one_class", "all_ignore", "single_pixel_class"])
def test_degenerate_batches_have_finite_gradients(case):
    torch.manual_seed(2)
    raw = torch.randn(50, 8, requires_grad=True)
    labels = {"one_class": torch.zeros(50, dtype=torch.long),
              "all_ignore": torch.full((50,), 255),
              "single_pixel_class": torch.cat([torch.zeros(49, dtype=torch.long), torch.ones(1, dtype=torch.long)])}[case]
    loss = layer_loss(F.normalize(raw, dim=1), labels, 3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    if case == "all_ignore":
        assert loss.item() == 0.0


@pytest.mark.parametrize("static_slots", [True, False], ids=["static-slots", "slots-sized-to-the-batch"])
def test_a_batch_without_a_labelled_pixel_gives_zero_and_finite_gradients(static_slots):
    """Nothing to sample at any layer: no pair slot at all when the slots are sized to the batch."""
    from contextrast_cli.contrast.loss import ContextrastLoss

    torch.manual_seed(0)
    features = [torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 10, 4, 4, requires_grad=True)]
    criterion = ContextrastLoss(4, (6, 10), layers=(1, 2), lambdas=(1.0, 1.0), embed_dim=8, hidden_cap=8,
                                static_slots=static_slots)
    terms = criterion(features, torch.randn(2, 4, 16, 16), torch.full((2, 16, 16), 255))
    total = sum(value for name, value in terms.items() if name.startswith("loss_"))
    total.backward()
    assert float(total) == 0.0 and float(terms["ccl_present"]) == 0
    assert all(torch.isfinite(f.grad).all() for f in features)


def test_each_layer_term_is_alpha_times_its_lambda_times_its_layer_loss():
    """loss_ccl_l{i} = alpha * lambda_i * L_i: the same loss with alpha 1 and lambdas 1 gives the
    L_i; hand-set lambdas and alpha then scale each layer's term by exactly their product."""
    from contextrast_cli.contrast.loss import ContextrastLoss

    torch.manual_seed(0)
    features = [torch.randn(2, 6, 8, 8, dtype=torch.float64), torch.randn(2, 10, 4, 4, dtype=torch.float64)]
    logits = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 16, 16))
    settings = dict(layers=(1, 2), embed_dim=8, hidden_cap=8, max_positives=20, max_negatives=30)
    unit = ContextrastLoss(4, (6, 10), lambdas=(1.0, 1.0), alpha=1.0, **settings).double().train()
    weighted = ContextrastLoss(4, (6, 10), lambdas=(0.25, 0.75), alpha=0.2, **settings).double().train()
    weighted.load_state_dict(unit.state_dict())
    torch.manual_seed(1)
    layer_loss = unit(features, logits, target)
    torch.manual_seed(1)  # the same samples
    terms = weighted(features, logits, target)
    losses = [float(layer_loss[f"loss_ccl_l{i}"]) for i in (1, 2)]
    assert losses[0] > 0 and losses[1] > 0 and losses[0] != losses[1]
    for layer, lam in ((1, 0.25), (2, 0.75)):
        assert float(terms[f"loss_ccl_l{layer}"]) == pytest.approx(0.2 * lam * losses[layer - 1], rel=1e-12)
