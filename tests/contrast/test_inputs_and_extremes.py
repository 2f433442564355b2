"""Issue 34's defects of the loss, each a regression test seen failing on the code before the fix:
the InfoNCE shift at small temperatures, and the bad inputs that gave no clear message (a batch
size that differs between features and target; label ids outside 0..K-1 that are not
``ignore_index``). The dominated-layer top-up is in test_sampling.py."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from contextrast_cli.contrast.ccl import pixel_anchor_loss
from contextrast_cli.contrast.loss import ContextrastLoss, PixelContrastLoss
from tests.contrast.test_ccl import samples


def stable_reference(anchors, emb, pos, neg, tau) -> float:
    """METHOD.md section 2.5 literally, in Python floats, each log-sum-exp shifted by its largest
    term (so it holds at any tau): -log(e^{s+} / (e^{s+} + sum e^{s-})) = LSE(s+, s-...) - s+."""
    terms = []
    for n, a in enumerate(anchors):
        if not pos[n]:
            continue
        negatives = [float(a @ emb[q]) / tau for q in neg[n]]
        inner = []
        for p in pos[n]:
            logits = [float(a @ emb[p]) / tau] + negatives
            top = max(logits)
            inner.append(top + math.log(sum(math.exp(x - top) for x in logits)) - logits[0])
        terms.append(sum(inner) / len(inner))
    return sum(terms) / len(terms)


def unit(*rows) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("tau", [1e-5, 1e-3, 0.1, 10.0])
def test_the_loss_is_the_formula_at_any_temperature(tau):
    """At tau = 1e-5 the loss was 1851.6 where the formula gives 0: a -1e4 fill started the
    max-shift, so negatives whose logits all lie below -1e4 (cosines below -0.1 at tau = 1e-5)
    vanished from the log-sum-exp. Anchor 2's positive (cosine -0.3) is nearer than its negatives
    (-0.6, -0.9): the formula gives ~0 at small tau (the old code: 88058)."""
    anchors = torch.eye(4, dtype=torch.float64)
    emb = unit([1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1, 0, 0], [0.95, 0, -0.3, 0], [0, 0.8, -0.6, 0],
               [0.43, 0, -0.9, 0], [0, 0.2, 0, 1], [0.5, 0.5, 0, 0])
    pos = [[0, 1], [7], [3], [6]]
    bane = [[2], [0], [4], []]
    pool, topup = [5, 7, 3], [[0], [0, 2], [0], [1]]
    neg = [[2, 5], [0, 5, 3], [4, 5], [7]]
    positives, negatives = samples(pos, bane, pool, topup, 4)
    ours = pixel_anchor_loss(anchors, emb.T[None], positives, negatives, tau=tau)["loss"].item()
    expected = stable_reference(anchors, emb, pos, neg, tau)
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_an_anchor_without_negatives_contributes_zero_at_a_tiny_temperature():
    anchors = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), dim=1)
    emb = F.normalize(torch.tensor([[-1.0, 0.2], [0.0, 1.0]], dtype=torch.float64), dim=1)
    positives, negatives = samples([[0], []], [[], []], [1], [[], []], 2)  # anchor 0: a positive, no negative
    for tau in (1e-5, 0.1):
        loss = pixel_anchor_loss(anchors, emb.T[None], positives, negatives, tau=tau)["loss"]
        assert loss.item() == 0.0


@pytest.mark.parametrize("loss", [ContextrastLoss, PixelContrastLoss])
def test_a_batch_size_mismatch_names_both_shapes(loss):
    criterion = loss(5, [8, 8, 8, 8])
    features = [torch.randn(2, 8, 8, 8) for _ in range(4)]
    with pytest.raises(ValueError, match=re.escape("(2, 8, 8, 8)") + ".*" + re.escape("(3, 16, 16)")):
        criterion(features, torch.randn(3, 5, 16, 16), torch.zeros(3, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("(2, 8, 8, 8)") + ".*" + re.escape("(3, 5, 16, 16)")):
        criterion(features, torch.randn(3, 5, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long))


@pytest.mark.parametrize("loss", [ContextrastLoss, PixelContrastLoss])
@pytest.mark.parametrize("bad", [7, -3, 254])
def test_a_label_outside_the_classes_names_the_value(loss, bad):
    """Ids outside 0..K-1 that are not ignore_index were silently ignored."""
    criterion = loss(5, [8, 8, 8, 8])
    features = [torch.randn(2, 8, 8, 8) for _ in range(4)]
    target = torch.randint(0, 5, (2, 16, 16))
    target[1, 3, 4] = bad
    target[0, 0, 0] = 255  # ignore_index is fine
    with pytest.raises(ValueError, match=f"label {bad}, outside 0..4 and not ignore_index 255"):
        criterion(features, torch.randn(2, 5, 16, 16), target)
