"""The pixel-contrast baseline (Wang et al., ICCV 2021): sampling rules, SupCon parity, edge cases."""

import json
import math

import torch
import torch.nn.functional as F

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.pixel_contrast import pixel_contrast_loss, sample_views, supcon_loss
from contextrast_cli.train.trainer import Trainer
from tests.conftest import tiny_overrides


def reference_supcon(feats, classes, tau, base_tau):
    """Float64 loops following the authors' ``_contrastive``: every view an anchor,
    positives = same class minus itself, negatives = other classes."""
    a, v, _ = feats.shape
    x = feats.double().reshape(a * v, -1)
    y = classes.repeat_interleave(v)
    per_anchor = []
    for i in range(a * v):
        negatives = sum(math.exp(float(x[i] @ x[n]) / tau) for n in range(a * v) if y[n] != y[i])
        terms = [float(x[i] @ x[p]) / tau - math.log(math.exp(float(x[i] @ x[p]) / tau) + negatives)
                 for p in range(a * v) if p != i and y[p] == y[i]]
        per_anchor.append(-(tau / base_tau) * sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def test_supcon_matches_float64_reference():
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(4, 5, 8, dtype=torch.float64), dim=-1)
    classes = torch.tensor([0, 2, 0, 1])  # two pairs of the same class (cross-image positives)
    got = supcon_loss(feats, classes, 0.1, 0.07)
    assert math.isclose(float(got), reference_supcon(feats, classes, 0.1, 0.07), rel_tol=1e-6)


def test_supcon_class_permutation_invariant():
    torch.manual_seed(1)
    feats = F.normalize(torch.randn(3, 6, 16), dim=-1)
    classes = torch.tensor([0, 1, 2])
    assert torch.allclose(supcon_loss(feats, classes, 0.1, 0.07), supcon_loss(feats, torch.tensor([2, 0, 1]), 0.1, 0.07))


def _constructed():
    """One image, 3 classes: class 0 = 30 px (10 wrong), class 1 = 25 px (2 wrong), class 2 = 5 px."""
    labels = torch.tensor([0] * 30 + [1] * 25 + [2] * 5).view(1, 6, 10)
    pred = labels.clone().view(-1)
    pred[:10] = 1      # 10 hard pixels of class 0
    pred[30:32] = 2    # 2 hard pixels of class 1
    return labels, pred.view(1, 6, 10)


def test_hard_easy_split_by_hand():
    labels, pred = _constructed()
    # class 2 has 5 <= max_views pixels: not qualifying; 2 pairs -> views = min(20 // 2, 8) = 8
    index, classes = sample_views(labels, pred, 3, max_samples=20, max_views=8,
                                  generator=torch.Generator().manual_seed(0))
    assert classes.tolist() == [0, 1] and index.shape == (2, 8)
    flat, flat_pred = labels.view(-1), pred.view(-1)
    hard = (flat_pred != flat)[index]
    assert hard.sum(1).tolist() == [4, 2]  # class 0: 4 hard + 4 easy; class 1: only 2 hard, so 6 easy
    assert (flat[index] == classes[:, None]).all()
    assert all(len(set(row.tolist())) == 8 for row in index)  # no pixel twice


def test_hard_only_pair_fills_from_hard():
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    pred = torch.ones_like(labels)  # every pixel wrong: no easy pixels at all
    pred[1] = 0                     # image 1: every pixel right: no hard pixels
    index, classes = sample_views(labels, pred, 2, max_samples=1024, max_views=10)
    assert classes.tolist() == [0, 0] and index.shape == (2, 10)
    assert (index[0] < 20).all() and (index[1] >= 20).all()  # each pair stays in its image


def test_no_qualifying_class_gives_zero_loss_with_gradient():
    emb = F.normalize(torch.randn(2, 8, 4, 4), dim=1).requires_grad_()
    labels = torch.full((2, 4, 4), 255)
    labels[0, 0, :3] = 1  # 3 pixels: below max_views
    out = pixel_contrast_loss(emb, labels, labels.clone(), 4, tau=0.1, max_views=5)
    assert out["loss"].item() == 0.0 and out["pairs"].item() == 0
    out["loss"].backward()
    assert torch.isfinite(emb.grad).all()


def test_pixel_contrast_contributes_in_training(tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + [
        "contrast.method=pixel-contrast", "contrast.pixel_contrast={max_views: 5}", "contrast.layers=[1]",
        "contrast.lambdas=[1.0]"])
    trainer = Trainer(cfg)
    assert len(trainer.criterion.heads) == 1  # one head, on the last listed layer (stride 4)
    terms = trainer._step(next(trainer._batches()))
    assert terms["loss_pc"] > 0 and terms["pc_pairs"] > 0
    assert math.isclose(float(terms["loss"]), float(terms["loss_ce"] + terms["loss_pc"]), rel_tol=1e-6)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.criterion.parameters())
    result = trainer.run()
    logged = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss_pc", "pc_pairs", "pc_views"} <= set(logged)


def test_more_qualifying_pairs_than_samples_keeps_one_view_of_a_random_subset():
    """12 qualifying (image, class) pairs and max_samples 5 (a large per-process batch on a
    many-class dataset): 5 pairs drawn at random, one view each, every pair drawn about equally
    often over draws; the loss is finite."""
    labels = torch.arange(6).repeat_interleave(4).view(1, 4, 6).expand(2, 4, 6).contiguous()  # (2, 4, 6): 6 classes
    pred = labels.clone()
    counts = torch.zeros(12)
    for seed in range(600):
        index, classes = sample_views(labels, pred, 6, max_samples=5, max_views=3,
                                      generator=torch.Generator().manual_seed(seed))
        assert index.shape == (5, 1)
        image, klass = index[:, 0] // 24, labels.reshape(-1)[index[:, 0]]
        assert torch.equal(klass, classes)
        pairs = image * 6 + klass
        assert pairs.unique().numel() == 5  # distinct pairs
        counts[pairs] += 1
    assert counts.sum() == 3000 and counts.min() > 200 and counts.max() < 300  # 250 expected each
    emb = F.normalize(torch.randn(2, 8, 4, 6), dim=1)
    out = pixel_contrast_loss(emb, labels, pred, 6, max_samples=5, max_views=3)
    assert torch.isfinite(out["loss"]) and out["pairs"] == 5 and out["views"] == 1
