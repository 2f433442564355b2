"""The plain form (contrast/plain.py) against values computed by hand on tiny inputs, and the fast
loss against the plain form in float64 on the same samples (values and gradients, 1e-10):
Contextrast with and without BANE, Contextrast++ with each fusion and each selection, the AA loss
on and off. The 2-process case is in tests/train/test_distributed.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contextrast_cli.contrast import loss as loss_module
from contextrast_cli.contrast import plain
from contextrast_cli.contrast.fusion import AnchorFusion, fused_anchors
from contextrast_cli.contrast.grids import resize_labels
from contextrast_cli.contrast.loss import ContextrastLoss
from tests.contrast.test_loss_reference import inputs

SIG = 1 / (1 + math.exp(-1 / math.sqrt(2)))  # softmax([0, 1/sqrt 2])[1]


def identity_fusion(mlp_weight: list[list[float]]) -> AnchorFusion:
    """d = 2: W_q = W_k = W_v = I, no biases, a one-layer MLP with the given (2, 4) weight."""
    fusion = AnchorFusion(2, mlp_layers=1).double()
    with torch.no_grad():
        for attention in (fusion.high, fusion.low):
            for layer in (attention.query, attention.key, attention.value):
                layer.weight.copy_(torch.eye(2))
                layer.bias.zero_()
        fusion.mlp[0].weight.copy_(torch.tensor(mlp_weight))
        fusion.mlp[0].bias.zero_()
    return fusion


def test_one_adaptive_fusion_by_hand():
    """a_I = (0, 1): q k^T / sqrt 2 = [[0, 0], [0, 1/sqrt 2]]: row 0 attends evenly, row 1 with
    weights (1 - SIG, SIG): F_h(a_I) = (0.5, SIG). a_i = (1, 0): F_l(a_i) = (SIG, 0.5). The MLP takes
    F_h's first and F_l's second channel: (0.5, 0.5) -> unit (1/sqrt 2, 1/sqrt 2)."""
    fusion = identity_fusion([[1, 0, 0, 0], [0, 0, 0, 1]])
    low, high = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert plain.channel_attention(high, fusion.high).tolist() == pytest.approx([0.5, SIG], abs=1e-12)
    assert plain.channel_attention(low, fusion.low).tolist() == pytest.approx([SIG, 0.5], abs=1e-12)
    assert plain.adaptive_update(low, high, fusion).tolist() == pytest.approx([0.5, 0.5], abs=1e-12)
    anchors = plain.contextual_anchors([low[None], high[None]], [torch.tensor([3]), torch.tensor([5])], w_low=0.7,
                                       w_high=0.3, fusions=[fusion])
    assert anchors[0][0].tolist() == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-12)
    assert anchors[1][0].tolist() == [0.0, 1.0]  # the deepest layer keeps its own
    # the module (scaled_dot_product_attention) and the fast update agree with the plain form
    assert fusion(low[None], high[None])[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-12)
    fast = fused_anchors(torch.stack([low[None], high[None]]), torch.tensor([[3], [5]]), [fusion])
    assert fast[0, 0].tolist() == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-12)


def test_a_class_absent_from_the_deepest_layer_keeps_its_own_anchor():
    fusion = identity_fusion([[1, 0, 0, 0], [0, 0, 0, 1]])
    low = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    anchors = plain.contextual_anchors([low, torch.zeros(1, 2, dtype=torch.float64)],
                                       [torch.tensor([2]), torch.tensor([0])], w_low=0.7, w_high=0.3, fusions=[fusion])
    assert anchors[0][0].tolist() == pytest.approx([0.6, 0.8], abs=1e-12)


def test_one_aa_term_over_a_three_class_bank_by_hand():
    """tau = 0.5, K_M = 2. Class 0's S = (1, 0); its entries (1, 0) and (0.6, 0.8) are the
    positives (logits 2 and 1.2); class 1's (0, 1) twice and class 2's (-1, 0) twice are the
    negatives (logits 0, 0, -2, -2). Class 1 takes no part (not chosen), class 2 has no S."""
    entries = torch.tensor([[[1, 0], [0.6, 0.8]], [[0, 1], [0, 1]], [[-1, 0], [-1, 0]]], dtype=torch.float64)
    bank = plain.BankDraw(entries, torch.ones(3, 2, dtype=torch.bool))
    S = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    chosen = torch.tensor([True, False, False])
    negatives = 2 * math.exp(0) + 2 * math.exp(-2)
    expected = sum(-math.log(math.exp(s) / (math.exp(s) + negatives)) for s in (2.0, 1.2)) / 2
    assert plain.anchor_to_anchor_loss(S, chosen, bank, 0.5).item() == pytest.approx(expected, abs=1e-12)
    # with class 1 chosen too, the mean of both classes' terms: class 1's positives (0, 1) twice (logits 2, 2)
    # against class 0's and class 2's entries (logits 0, 1.6, 0, 0)
    chosen[1] = True
    second = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.6) + 2))
    assert plain.anchor_to_anchor_loss(S, chosen, bank, 0.5).item() == pytest.approx((expected + second) / 2, abs=1e-12)
    # an empty queue takes no part, as positive or negative
    bank.valid[2] = False
    alone = sum(-math.log(math.exp(s) / (math.exp(s) + 2)) for s in (2.0, 1.2)) / 2
    chosen[1] = False
    assert plain.anchor_to_anchor_loss(S, chosen, bank, 0.5).item() == pytest.approx(alone, abs=1e-12)


def test_the_class_prioritized_selection_is_the_deepest_layer_where_the_class_is_present():
    anchors = [torch.full((3, 2), float(i + 1), dtype=torch.float64) for i in range(3)]  # layer i: all (i+1)
    counts = [torch.tensor([4, 4, 4]), torch.tensor([2, 0, 2]), torch.tensor([1, 0, 0])]
    S, chosen = plain.representatives(anchors, counts, "prioritized")
    assert S[:, 0].tolist() == [3.0, 1.0, 2.0] and chosen.tolist() == [True, True, True]
    assert plain.representatives(anchors, counts, "earliest")[0][:, 0].tolist() == [1.0, 1.0, 1.0]
    S, chosen = plain.representatives(anchors, counts, "deepest")
    assert S[:, 0].tolist() == [3.0, 3.0, 3.0] and chosen.tolist() == [True, False, False]
    average = plain.representatives(anchors, counts, "average")[0]
    assert average[0].tolist() == pytest.approx([1 / math.sqrt(2)] * 2)  # unit mean of (1,1), (2,2), (3,3)


CASES = {
    "contextrast-bane": dict(),
    "contextrast-random-negatives": dict(bane_ratio=None),
    "static-no-aa": dict(fusion="static", lambdas=(0.1, 0.7, 1.0)),
    "adaptive-no-aa": dict(fusion="adaptive"),
    **{f"{fusion}-aa-{selection}": dict(fusion=fusion, aa=True, aa_selection=selection)
       for fusion in ("static", "adaptive") for selection in ("prioritized", "deepest", "earliest", "average")},
    "adaptive-aa-stop-grad-unbalanced": dict(fusion="adaptive", aa=True, anchor_stop_grad=True, aa_balanced=False),
}
SETTINGS = dict(layers=(1, 2, 3), lambdas=(0.3, 0.6, 1.0), alpha=0.2, tau=0.15, anchor_weights=(0.6, 0.4),
                max_positives=7, max_negatives=9, embed_dim=5, bank_size=4)


def prepared(settings: dict, k: int = 6) -> ContextrastLoss:
    """A float64 loss whose embeddings are the maps themselves, its bank partly filled (one class
    full, some partial, some empty: draws with replacement and empty queues both occur)."""
    torch.manual_seed(0)
    criterion = ContextrastLoss(k, (5, 5, 5), **{**SETTINGS, **settings}).double()
    criterion.heads = nn.ModuleList(nn.Identity() for _ in range(3))
    if criterion.aa:
        for step in range(5):
            chosen = torch.tensor([True, step < 2, step % 2 == 0, step < 1, False, True])
            criterion.bank.push(F.normalize(torch.randn(k, 5, dtype=torch.float64), dim=1), chosen)
    return criterion


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("static_slots", [True, False], ids=["static", "sized-and-compact"])
def test_the_fast_loss_equals_the_plain_form(case, static_slots, monkeypatch):
    """Both fast paths: fixed shapes (a GPU's), and sized on the host (the CPU's: samples sized to
    the batch, the fusion modules run on the updated classes alone)."""
    criterion = prepared({**CASES[case], "static_slots": static_slots})
    features, logits, target = inputs(dominated=case.endswith("unbalanced"))
    drawn = []
    real = loss_module.sample_stacked
    monkeypatch.setattr(loss_module, "sample_stacked", lambda *a, **kw: drawn.append(real(*a, **kw)) or drawn[-1])
    draw = criterion.bank.draw() if criterion.aa else None
    if criterion.aa:
        monkeypatch.setattr(criterion.bank, "draw", lambda *a, **kw: draw)
    ours = [f.clone().requires_grad_() for f in features]
    terms = criterion(ours, logits, target)
    fast = sum(value for key, value in terms.items() if key.startswith("loss_"))
    params = list(criterion.parameters())
    fast_param_grads = torch.autograd.grad(fast, params, retain_graph=True) if params else []
    fast.backward()

    theirs = [f.clone().requires_grad_() for f in features]
    labels = [resize_labels(target, f.shape[-2:]) for f in features]
    fusions = criterion.fusions if criterion.fusion == "adaptive" else None
    losses, anchors, counts = plain.contextrast_losses(
        theirs, labels, drawn[0].as_plain(), 6, tau=0.15, w_low=0.6, w_high=0.4,
        stop_grad=criterion.anchor_stop_grad, fusions=fusions)
    expected = sum(0.2 * lam * layer for lam, layer in zip(criterion.lambdas, losses))
    if criterion.aa:
        S, chosen = plain.representatives(anchors, counts, criterion.aa_selection)
        aa = plain.anchor_to_anchor_loss(S, chosen, draw, 0.15)
        assert aa.item() > 0 and float(terms["loss_aa"]) == pytest.approx(0.2 * aa.item(), rel=1e-10)
        expected = expected + 0.2 * aa
    plain_param_grads = torch.autograd.grad(expected, params, retain_graph=True) if params else []
    expected.backward()
    assert float(fast.detach()) == pytest.approx(float(expected.detach()), rel=1e-10, abs=1e-12)
    for got, want in zip(ours, theirs):
        assert want.grad.abs().sum() > 0
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10, atol=1e-10)
    for got, want in zip(fast_param_grads, plain_param_grads):  # the fusion modules' own gradients
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["contextrast", "contextrast++"])
def test_the_plain_implementation_gives_the_fast_terms_when_every_pixel_is_sampled(method):
    """``implementation="plain"`` end to end (its own sampling): with caps above every layer's pixel
    count, both implementations take every pixel of a class as its positives and every other-class
    pixel as its negatives, whatever their random draws, so the terms must agree (the bank full:
    its read takes every entry once)."""
    torch.manual_seed(0)
    features, logits, target = inputs()
    settings = dict(SETTINGS, max_positives=500, max_negatives=500)
    if method == "contextrast++":
        settings.update(fusion="adaptive", aa=True, lambdas=(0.1, 0.3, 1.0))
    fast = ContextrastLoss(6, (5, 5, 5), **settings).double()
    slow = ContextrastLoss(6, (5, 5, 5), implementation="plain", **settings).double()
    for criterion in (fast, slow):
        criterion.heads = nn.ModuleList(nn.Identity() for _ in range(3))
    slow.load_state_dict(fast.state_dict())
    if fast.aa:
        for _ in range(4):  # every queue full
            anchors = F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
            for criterion in (fast, slow):
                criterion.bank.push(anchors, torch.ones(6, dtype=torch.bool))
    ours = fast([f.clone() for f in features], logits, target)
    theirs = slow([f.clone() for f in features], logits, target)
    assert ours.keys() == theirs.keys()
    for key in ours:
        if key.endswith(("_bane", "_topup")):  # how the negatives split between the two may differ
            continue
        assert float(ours[key]) == pytest.approx(float(theirs[key]), rel=1e-9, abs=1e-12), key
    assert float(ours["loss_ccl_l1"]) > 0 and (method == "contextrast" or float(ours["loss_aa"]) > 0)
