"""The feature-space measures A (intra-class spread) and U (inter-class separation) on hand-built embeddings."""

import math

import pytest
import torch

from contextrast_cli.evaluation.feature_space import FeatureSpaceMeter

U_VEC, V_VEC, W_VEC, JUNK = (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.6, 0.8)


def scene():
    """A 2x4 map: class 0 at u, u, v; class 1 at w, w, w; two ignored pixels with other vectors."""
    vectors = [[U_VEC, U_VEC, V_VEC, JUNK], [W_VEC, W_VEC, W_VEC, JUNK]]
    labels = torch.tensor([[[0, 0, 0, 255], [1, 1, 1, 255]]])
    emb = torch.tensor(vectors).permute(2, 0, 1)[None]  # (1, 2, 2, 4)
    return emb, labels


def test_spread_and_separation_by_hand():
    emb, labels = scene()
    meter = FeatureSpaceMeter(2, per_class=100)
    meter.update(("layers", 1), emb, labels)
    out = meter.compute(("a", "b"))["layers"]["1"]
    # class 0: pairs (u,u) 0, (u,v) sqrt 2 twice -> 2 sqrt(2) / 3; class 1: all at w -> 0
    assert out["A"] == pytest.approx((2 * math.sqrt(2) / 3 + 0) / 2)
    # centroids (2/3, 1/3) and (-1, 0)
    assert out["U"] == pytest.approx(math.sqrt((5 / 3) ** 2 + (1 / 3) ** 2))
    assert out["pixels"] == 6 and out["classes"] == 2


def test_accumulates_over_images_and_layers_sizes():
    emb, labels = scene()
    meter = FeatureSpaceMeter(2, per_class=100)
    meter.update(("layers", 1), emb, labels)
    meter.update(("layers", 1), emb, labels)  # the same image twice: centroids unchanged, more pairs
    # labels at twice the embedding's size are resized by nearest neighbour to it
    meter.update(("embeddings", 3), emb, labels.repeat_interleave(2, 1).repeat_interleave(2, 2))
    out = meter.compute(("a", "b"))
    # class 0 now u x4, v x2: 8 of the 15 pairs at sqrt 2
    assert out["layers"]["1"]["A"] == pytest.approx(8 * math.sqrt(2) / 15 / 2)
    assert out["layers"]["1"]["U"] == pytest.approx(math.sqrt((5 / 3) ** 2 + (1 / 3) ** 2))
    assert out["embeddings"]["3"]["A"] == pytest.approx(math.sqrt(2) / 3)


def test_sampling_caps_each_class_uniformly():
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    labels = torch.randint(0, 3, (4, 30, 30))
    noise = torch.tensor([0.1, 0.3, 0.6])[labels][:, None]  # each class its own spread
    emb = torch.nn.functional.normalize(centres[labels].permute(0, 3, 1, 2) + noise * torch.randn(4, 8, 30, 30), dim=1)
    full, capped = FeatureSpaceMeter(3, per_class=10**6), FeatureSpaceMeter(3, per_class=300)
    for meter in (full, capped):
        for i in range(4):  # four images, one at a time: the cap holds across updates
            meter.update(("layers", 1), emb[i:i + 1], labels[i:i + 1])
    a, b = full.compute(("x", "y", "z"))["layers"]["1"], capped.compute(("x", "y", "z"))["layers"]["1"]
    assert b["pixels"] == 900 and a["pixels"] == 3600
    assert torch.bincount(capped.state[("layers", 1)]["lab"]).tolist() == [300, 300, 300]
    assert b["U"] == pytest.approx(a["U"])  # centroids use every pixel
    assert b["A"] == pytest.approx(a["A"], rel=0.03)  # a uniform sample of 300 per class
