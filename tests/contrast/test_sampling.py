"""The sampling laws, over many draws with fixed inputs and fixed seeds (deterministic tests):
positives uniform over their class, BANE exactly the nearest share of each error region,
top-up uniform over the other classes' labelled pixels without repeats, and a capped anchor
set keeping every present class equally often."""

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from contextrast_cli.contrast.bane import bane_maps
from contextrast_cli.contrast.sampling import (choose_anchors, present_classes, sample_layers, sample_positives,
                                              select_negatives)

DRAWS = 2000


def uniform(counts: np.ndarray) -> float:
    """The chi-square p-value of ``counts`` against equal expectations."""
    return float(chisquare(counts).pvalue)


def test_positives_are_a_uniform_sample_of_their_class_without_repeats():
    labels = torch.tensor([0] * 30 + [1] * 4 + [255] * 5 + [2] * 12)
    hits = np.zeros(labels.numel())
    for seed in range(DRAWS):
        pos = sample_positives(labels, 3, 10, generator=torch.Generator().manual_seed(seed))
        assert pos.counts.tolist() == [10, 4, 10]
        picked = pos.index[pos.valid]
        assert picked.unique().numel() == picked.numel() == 24  # distinct pixels
        assert torch.equal(labels[picked], pos.anchor[pos.valid])  # each of its own class
        hits[picked.numpy()] += 1
    assert (hits[30:34] == DRAWS).all() and (hits[34:39] == 0).all()  # a small class whole; ignore never
    assert uniform(hits[:30]) > 1e-3 and hits[:30].sum() == 10 * DRAWS  # each class-0 pixel 1/3 of the time
    assert uniform(hits[39:]) > 1e-3


def test_only_anchored_classes_get_positives():
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    pos = sample_positives(labels, 3, 4, anchored=torch.tensor([True, False, True]))
    assert pos.counts.tolist() == [4, 0, 4] and set(pos.anchor[pos.valid].tolist()) == {0, 2}


def error_regions():
    """Two 24x32 images: class 0 background, a class-1 and a class-2 object; the prediction grows
    the class-1 object, shrinks the class-2 one, and paints a class-2 blob over the background."""
    labels = torch.zeros(2, 24, 32, dtype=torch.long)
    labels[:, 4:14, 4:16] = 1
    labels[:, 10:20, 18:30] = 2
    labels[1, 0:3, :] = 255
    pred = labels.clone()
    pred[pred == 255] = 0
    pred[:, 2:16, 2:18] = 1
    pred[:, 12:18, 20:28] = 0
    pred[0, 18:23, 2:11] = 2
    return pred, labels


def reference_picks(pred: torch.Tensor, labels: torch.Tensor, n: int, ratio: float) -> tuple[np.ndarray, list]:
    """E^n per image with OpenCV's exact distance transform; the ceil(ratio * |E^n|) smallest
    distances of the batch, and every pixel's distance (flat index -> distance)."""
    dist = {}
    for b in range(pred.shape[0]):
        error = ((pred[b] == n) & (labels[b] != n) & (labels[b] != 255)).numpy()
        d = cv2.distanceTransform(error.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        for y, x in zip(*np.nonzero(error)):
            dist[b * error.size + y * error.shape[1] + x] = float(d[y, x])
    keep = math.ceil(ratio * len(dist))
    return np.sort(np.array(list(dist.values())))[:keep], dist


@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0])
def test_bane_picks_are_the_nearest_share_of_each_error_region(ratio):
    pred, labels = error_regions()
    selection = select_negatives(pred, labels, 3, max_negatives=10**4, bane_ratio=ratio,
                                 generator=torch.Generator().manual_seed(0))
    bane = selection.bane
    for n in (0, 1, 2):
        nearest, dist = reference_picks(pred, labels, n, ratio)
        picks = bane.index[bane.valid & (bane.anchor == n)].tolist()
        assert len(picks) == len(nearest) == int(bane.counts[n]) and len(set(picks)) == len(picks)
        assert all(p in dist for p in picks)  # pixels of E^n: predicted n, labelled otherwise
        ours = np.array([dist[p] for p in picks])
        assert np.allclose(ours, nearest, atol=1e-4)  # in order, nearest the boundary first
    assert int(bane.counts[1]) > 0 and int(bane.counts[2]) > 0
    maps = bane_maps(pred, labels, 3, ratio)
    assert int(maps.selected.sum()) == int(bane.counts.sum())  # what the figure shows is what the loss takes


def test_bane_picks_are_capped_at_max_negatives_nearest_first():
    pred, labels = error_regions()
    bane = select_negatives(pred, labels, 3, max_negatives=20, bane_ratio=1.0).bane
    nearest, dist = reference_picks(pred, labels, 1, 1.0)
    picks = bane.index[bane.valid & (bane.anchor == 1)].tolist()
    assert len(picks) == 20 and np.allclose([dist[p] for p in picks], nearest[:20], atol=1e-4)


def test_top_up_is_uniform_over_other_labelled_pixels_without_repeats():
    """Anchor 0 (40 px of 120) takes 12 negatives from a pool of 48: uniform over the 70 other-class
    labelled pixels, never its own class or ignore, no pixel twice; BANE picks are not repeated."""
    labels = torch.tensor([0] * 40 + [1] * 50 + [2] * 20 + [255] * 10).view(1, 10, 12)
    pred = labels.clamp_max(2)
    hits = np.zeros(labels.numel())
    for seed in range(DRAWS):
        sel = select_negatives(pred, labels, 3, 12, None, generator=torch.Generator().manual_seed(seed), pool_size=48)
        taken = sel.pool[sel.topup[0]]
        assert taken.numel() == 12 and taken.unique().numel() == 12
        assert ((labels.reshape(-1)[taken] != 0) & (labels.reshape(-1)[taken] != 255)).all()
        hits[taken.numpy()] += 1
    assert hits[:40].sum() == 0 and hits[110:].sum() == 0
    assert uniform(hits[40:110]) > 1e-3 and hits[40:110].sum() == 12 * DRAWS


def test_bane_and_top_up_together_fill_max_negatives_without_repeats():
    pred, labels = error_regions()
    sel = select_negatives(pred, labels, 3, 60, 0.5, generator=torch.Generator().manual_seed(3))
    index, valid, is_bane = sel.index, sel.valid, sel.is_bane
    flat = labels.reshape(-1)
    for n in range(3):
        row = index[n][valid[n]]
        assert row.unique().numel() == row.numel() == 60  # no pixel twice for one anchor
        assert ((flat[row] != n) & (flat[row] != 255)).all()
        assert int(is_bane[n].sum()) == int(sel.bane.counts[n])


def test_a_capped_anchor_set_keeps_every_present_class_equally_often():
    """6 present classes of very different sizes, cap 3: each is kept in half of the steps, the
    rare as often as the frequent; absent classes never."""
    sizes = {0: 2, 3: 5, 5: 40, 7: 200, 8: 600, 9: 1053}
    target = torch.cat([torch.full((n,), k) for k, n in sizes.items()] + [torch.full((100,), 255)]).view(1, 40, 50)
    kept = np.zeros(10)
    for seed in range(DRAWS):
        present = present_classes(target, 10)
        anchored = choose_anchors(present, 3, generator=torch.Generator().manual_seed(seed))
        assert int(anchored.sum()) == 3 and present.nonzero().flatten().tolist() == sorted(sizes)
        assert not (anchored & ~present).any()
        kept += anchored.numpy()
    assert kept[[1, 2, 4, 6]].sum() == 0
    assert uniform(kept[sorted(sizes)]) > 1e-3 and kept.sum() == 3 * DRAWS
    assert torch.equal(choose_anchors(present_classes(target, 10), None), present_classes(target, 10))


def test_slots_sized_to_the_batch_hold_exactly_the_static_slots_real_samples():
    """The CPU's slots sized by the batch's counts (no padding) draw the same samples as the static
    slots a GPU uses: same positives, BANE picks and top-up per anchor, at every layer."""
    from contextrast_cli.contrast.sampling import sample_layers

    generator = torch.Generator().manual_seed(5)
    labels = [torch.randint(0, 7, (2, 24 // s, 32 // s), generator=generator) for s in (1, 2, 4)]
    for lab in labels:
        lab[0, :2] = 255
    preds = [lab.clamp_max(6).roll(1, 2) for lab in labels]
    draws = {static: sample_layers(labels, preds, 7, 9, 14, 0.5, static_slots=static,
                                   generator=torch.Generator().manual_seed(11)) for static in (True, False)}
    static, sized = draws[True], draws[False]
    assert sized.layout.pairs == int(static.valid.sum()) < static.layout.pairs  # the padding is gone
    assert bool(sized.valid.all()) and sized.pool.shape[1] < static.pool.shape[1]
    for index in range(3):
        (pos_a, neg_a), (pos_b, neg_b) = static.layer(index), sized.layer(index)
        assert torch.equal(pos_a.index[pos_a.valid], pos_b.index) and torch.equal(pos_a.anchor[pos_a.valid], pos_b.anchor)
        assert torch.equal(neg_a.bane.index[neg_a.bane.valid], neg_b.bane.index)
        assert torch.equal(neg_a.index, neg_b.index) and torch.equal(neg_a.valid, neg_b.valid)
        assert torch.equal(neg_a.is_bane, neg_b.is_bane)


@pytest.mark.parametrize("static_slots", [True, False], ids=["static-slots", "slots-sized-to-the-batch"])
def test_top_up_reaches_max_negatives_when_one_class_holds_most_of_the_layer(static_slots):
    """Class 0 holds 90% of a layer (1000 of 1100 labelled pixels), so the shared pool of 4 x 8
    pixels holds about 3 of anchor 0's 100 other-class pixels: anchor 0 still gets its 8 top-up
    negatives every draw (the review saw 2.05 on average, from 0 to 6), distinct, never its own
    class or void, and uniformly over the 100 (issue 34)."""
    labels = torch.tensor([0] * 1000 + [1] * 64 + [2] * 36 + [255] * 20).view(1, 40, 28)
    flat = labels.reshape(-1)
    hits = np.zeros(flat.numel())
    for seed in range(DRAWS):
        samples = sample_layers([labels], None, 3, 1, 8, None, generator=torch.Generator().manual_seed(seed),
                                static_slots=static_slots)
        negatives = samples.layer(0)[1]
        for anchor in range(3):
            taken = negatives.random(anchor)
            assert taken.numel() == 8 and taken.unique().numel() == 8
            assert ((flat[taken] != anchor) & (flat[taken] != 255)).all()
        hits[negatives.random(0).numpy()] += 1
    assert hits[:1000].sum() == 0 and hits[1100:].sum() == 0
    assert hits[1000:1100].sum() == 8 * DRAWS and uniform(hits[1000:1100]) > 1e-3


def test_top_up_past_the_pool_skips_the_anchors_own_bane_picks():
    """With BANE on and the class dominating, the top-up taken past the pool never repeats one of
    the anchor's BANE picks, and BANE picks plus top-up fill max_negatives exactly."""
    labels = torch.zeros(1, 30, 40, dtype=torch.long)
    labels[0, 20:, 30:] = 1  # 100 px of class 1, the rest (1100 px) class 0
    labels[0, :4, :5] = 2  # 20 px of class 2
    pred = labels.clone()
    pred[0, 22:, 32:] = 0  # most of the class-1 block predicted as 0: E^0 holds 64 pixels
    for static_slots in (True, False):
        negatives = sample_layers([labels], [pred], 3, 1, 40, 0.25, generator=torch.Generator().manual_seed(1),
                                  static_slots=static_slots).layer(0)[1]
        picks = negatives.bane.index[negatives.bane.valid & (negatives.bane.anchor == 0)]
        random = negatives.random(0)
        assert picks.numel() == 16 and random.numel() == 40 - 16
        everything = torch.cat([picks, random])
        assert everything.unique().numel() == 40 and (labels.reshape(-1)[everything] != 0).all()
        assert int(negatives.spill.valid.sum()) > 0  # the pool alone fell short
