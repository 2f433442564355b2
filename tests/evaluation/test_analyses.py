"""The analyses of ``evaluation.analyses`` on small cases whose answers are worked out by hand here."""

import math

import cv2
import numpy as np
import pytest
import torch

from contextrast_cli.contrast import plain
from contextrast_cli.contrast.loss import ContextrastLoss
from contextrast_cli.evaluation.analyses.bands import BandMeter
from contextrast_cli.evaluation.analyses.groups import class_groups, group_ious
from contextrast_cli.evaluation.analyses.similarity import SimilarityMeter, analysis_anchors
from contextrast_cli.evaluation.analyses.sizes import SizeMeter, bucket_names, region_buckets


def test_class_groups_split_the_sorted_classes_in_three():
    names = ["a", "b", "c", "d", "e", "f", "g"]
    pixels = [50, 900, 10, 300, 300, 0, 70]  # d and e tie: d (the lower index) first
    groups = class_groups(names, pixels)
    assert groups == {"head": ["b", "d", "e"], "mid": ["g", "a"], "tail": ["c", "f"]}  # 7 = 3 + 2 + 2
    iou = {"a": 0.5, "b": 0.9, "c": None, "d": 0.7, "e": 0.2, "f": 0.1, "g": 0.3}
    assert group_ious(iou, groups) == {"head": pytest.approx(0.6), "mid": pytest.approx(0.4), "tail": 0.1}
    assert group_ious({**iou, "f": None}, groups)["tail"] is None
    assert class_groups(["x", "y", "z"], [1, 2, 3]) == {"head": ["z"], "mid": ["y"], "tail": ["x"]}


def test_train_pixel_counts_come_from_dataset_json_or_are_counted_once(tmp_path):
    import json

    from contextrast_cli.data.prepared import DATASET_JSON, Sample, read_prepared, train_pixel_counts, write_prepared

    first = np.zeros((4, 5), np.uint8)
    first[0, :3] = 1
    first[3, 4] = 255
    second = np.full((4, 5), 2, np.uint8)
    dataset = write_prepared(tmp_path / "d", name="folder", classes=("a", "b", "c"),
                             palette=((0, 0, 0), (1, 1, 1), (2, 2, 2)), source={},
                             splits={"train": [Sample("x", np.zeros((4, 5, 3), np.uint8), first),
                                               Sample("y", np.zeros((4, 5, 3), np.uint8), second)],
                                     "val": [Sample("z", np.zeros((4, 5, 3), np.uint8), second)]})
    assert dataset.meta["class_pixels"] == {"a": 16, "b": 3, "c": 20}  # val not counted
    counts, note = train_pixel_counts(dataset)
    assert counts.tolist() == [16, 3, 20] and note is None
    meta = json.loads((tmp_path / "d" / DATASET_JSON).read_text())
    del meta["class_pixels"]  # a dataset prepared before the counts were recorded
    (tmp_path / "d" / DATASET_JSON).write_text(json.dumps(meta))
    counts, note = train_pixel_counts(read_prepared(tmp_path / "d"))
    assert counts.tolist() == [16, 3, 20] and "counted its 2 train labels" in note


def rectangles():
    """A 100x140 ground truth: class 0 background (one region of 11,296 pixels, a 2x2 void patch
    inside), a 10x10 and a 20x30 rectangle of class 1, a 40x50 rectangle of class 2."""
    label = np.zeros((100, 140), np.uint8)
    label[5:15, 5:15] = 1  # 100 px: up to 16x16
    label[30:50, 5:35] = 1  # 600 px: 16x16 to 32x32
    label[40:80, 60:110] = 2  # 2000 px: 32x32 to 96x96
    label[90:92, 130:132] = 255
    return label


def test_object_sizes_of_drawn_rectangles():
    label = rectangles()
    pred = label.copy()
    pred[90:92, 130:132] = 2  # whatever is predicted in void does not count
    pred[5:15, 5:15] = 0  # the tiny rectangle missed
    pred[30:50, 5:20] = 2  # half of the small one (300 px) taken for class 2
    pred[40:80, 110:120] = 2  # class 2 bleeds 400 px into the background
    meter = SizeMeter(3, (16, 32, 96))
    meter.update(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])
    out = meter.compute(("bg", "one", "two"))["buckets"]
    assert list(out) == bucket_names((16, 32, 96)) == ["up to 16x16", "16x16 to 32x32", "32x32 to 96x96",
                                                      "over 96x96"]
    tiny, small, medium, large = out.values()
    assert [b["regions"] for b in out.values()] == [1, 1, 1, 1]
    assert [b["pixels"] for b in out.values()] == [100, 600, 2000, 11296]
    assert tiny["IoU"] == {"bg": None, "one": 0.0, "two": None} and tiny["mIoU"] == 0.0
    assert small["IoU"]["one"] == 0.5 and small["IoU"]["two"] is None and small["mIoU"] == 0.5
    assert medium["IoU"]["two"] == 1.0 and medium["mIoU"] == 1.0  # the bleed is no false positive here
    assert large["mIoU"] == pytest.approx(10896 / 11296, abs=1e-6)  # the missed tiny box is not the large's


def test_size_buckets_edges_and_diagonal_neighbours():
    label = np.full((40, 60), 255, np.uint8)
    label[0:16, 0:16] = 0  # 256 px = 16 x 16: still the first bucket
    label[20:36, 0:17] = 1  # 272 px: the second
    label[0:2, 30:32] = 2  # two 2x2 squares touching at a corner: one region of 8 px
    label[2:4, 32:34] = 2
    buckets, regions = region_buckets(label, (16, 32), 3)
    assert buckets[0, 0] == 0 and buckets[20, 0] == 1 and buckets[39, 59] == -1
    assert regions.tolist() == [2, 1, 0]


def band_reference(mask: np.ndarray, d: int) -> np.ndarray:
    """Cheng et al.'s ``mask_to_boundary``: a one-pixel zero border, d erosions by a 3x3 kernel."""
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return mask.astype(bool) & ~eroded.astype(bool)


def scene(shift: int):
    label = np.zeros((64, 96), np.uint8)
    cv2.circle(label, (30, 30), 18, 1, -1)
    cv2.rectangle(label, (55, 10), (90, 50), 2, -1)
    pred = np.roll(label, shift, axis=1)
    pred[60:, :20] = 1
    return label, pred


@pytest.mark.parametrize("radii", [(3, 10)])
def test_boundary_iou_at_two_thresholds_matches_opencv_erosion(radii):
    pairs = [scene(2), scene(-4)]
    meter = BandMeter(3, radii)
    for label, pred in pairs:
        meter.update(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])
    out = meter.compute(("a", "b", "c"))
    for d in radii:
        per_class = []
        for c in range(3):
            inter = union = 0
            for label, pred in pairs:  # counts summed over the images, then divided
                gt, pr = band_reference(label == c, d), band_reference(pred == c, d)
                inter, union = inter + (gt & pr).sum(), union + (gt | pr).sum()
            per_class.append(inter / union)
            assert out[f"{d}px"]["BIoU"][("a", "b", "c")[c]] == pytest.approx(inter / union, abs=1e-6)
        assert out[f"{d}px"]["mBIoU"] == pytest.approx(np.mean(per_class), abs=1e-6)
    assert out["3px"]["mBIoU"] != pytest.approx(out["10px"]["mBIoU"])


def curve_case():
    """28x24, class 0 in columns 0-15, class 1 in 16-23; a 20x12 block predicted 1 inside class 0
    (rows 2-21, columns 2-13: the distance to its edge is min(r - 1, 22 - r, c - 1, 14 - c), 1 to 6),
    and predicted as class 2 (absent from the labels: no anchor to be a negative of) pixel (0, 0)
    and a plus of five pixels centred on (25, 6), whose centre lies sqrt(2) from its edge.
    Embeddings in R^3: class 0 -> e0, class 1 -> e1, a block pixel at distance d ->
    e1 / d + sqrt(1 - 1 / d^2) e2."""
    label = np.zeros((28, 24), np.int64)
    label[:, 16:] = 1
    pred = label.copy()
    pred[2:22, 2:14] = 1
    pred[0, 0] = 2
    pred[24:27, 6] = pred[25, 5:8] = 2
    emb = np.zeros((3, 28, 24))
    emb[0][label == 0], emb[1][label == 1] = 1, 1
    for r in range(2, 22):
        for c in range(2, 14):
            d = min(r - 1, 22 - r, c - 1, 14 - c)
            emb[:, r, c] = [0, 1 / d, math.sqrt(1 - 1 / d**2)]
    return label, pred, emb


def test_the_similarity_curve_of_embeddings_built_to_follow_one_over_d():
    label, pred, emb = curve_case()
    loss = ContextrastLoss(3, (4,), layers=(1,), lambdas=(1.0,), embed_dim=4)
    meter = SimilarityMeter(3, update=loss.cross_layer_anchors, max_distance=8)
    meter.update({"embeddings": {1: torch.from_numpy(emb)[None].float()}}, torch.from_numpy(label)[None],
                 torch.from_numpy(pred)[None])
    curve = meter.compute()["embeddings"]["1"]
    assert curve["bins"] == ["1", "2", "3", "4", "5", "6", "7", "8+"]
    assert curve["negative"][:6] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6], abs=1e-6)
    assert curve["negative"][6:] == [None, None]
    # own class: the anchor of class 0 is the normalised mean of all its pixels, errors included;
    # distances from OpenCV's exact transform of each predicted class's error mask, binned [d, d + 1)
    a0 = emb[:, label == 0].mean(1)
    a0 /= np.linalg.norm(a0)
    own = {}
    for n in (1, 2):
        error = ((pred == n) & (label != n)).astype(np.uint8)
        distance = cv2.distanceTransform(np.pad(error, 1, constant_values=0), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        for (r, c), d in np.ndenumerate(distance):
            if error[r, c]:
                own.setdefault(min(int(d), 8), []).append(emb[:, r, c] @ a0)
    assert curve["own"][:6] == pytest.approx([np.mean(own[d]) for d in range(1, 7)], abs=1e-5)
    assert curve["pixels"] == [len(own.get(d, [])) for d in range(1, 9)]
    assert curve["pixels"][0] == 60 + 1 + 5  # the block's edge ring, (0, 0), the plus (its centre at sqrt(2))


def test_analysis_anchors_apply_the_cross_layer_update():
    labels = torch.tensor([[[0, 0, 1, 1]] * 2])  # (1, 2, 4)
    shallow = torch.nn.functional.normalize(torch.randn(1, 3, 2, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    deep = torch.nn.functional.normalize(torch.randn(1, 3, 2, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    loss = ContextrastLoss(3, (3, 3), layers=(1, 2), lambdas=(0.5, 1.0), embed_dim=3)  # anchor_weights 0.7 / 0.3
    anchors, counts = analysis_anchors({1: shallow, 2: deep}, labels, 3, loss.cross_layer_anchors)
    for c in (0, 1):
        m1 = shallow[0][:, labels[0] == c].mean(1)
        m2 = deep[0][:, labels[0] == c].mean(1)
        expected = 0.7 * m1 + 0.3 * m2
        assert torch.allclose(anchors[1][c], expected / expected.norm(), atol=1e-6)
        assert torch.allclose(anchors[2][c], m2 / m2.norm(), atol=1e-6)
    assert counts[1].tolist() == [4, 4, 0]


def test_analysis_anchors_of_contextrast_plus_plus_are_its_fused_anchors():
    """Issue 34: a ++ checkpoint's analyses compare with the anchors its loss forms (the fusion
    modules' update), written plainly by ``contrast.plain.contextual_anchors``."""
    labels = torch.tensor([[[0, 0, 1, 1]] * 2])
    generator = torch.Generator().manual_seed(2)
    embs = {i: torch.nn.functional.normalize(torch.randn(1, 4, 2, 4, generator=generator), dim=1) for i in (1, 2)}
    torch.manual_seed(0)
    loss = ContextrastLoss.plus_plus(3, (4, 4), layers=(1, 2), lambdas=(0.5, 1.0), embed_dim=4)
    with torch.no_grad():
        anchors, counts = analysis_anchors(embs, labels, 3, loss.cross_layer_anchors)
        rows = {i: plain.rows_of(e) for i, e in embs.items()}
        stats = [plain.class_means(rows[i], labels.reshape(-1), 3) for i in (1, 2)]
        expected = plain.contextual_anchors([m for m, _ in stats], [c for _, c in stats], w_low=0.7, w_high=0.3,
                                            fusions=list(loss.fusions))
    for layer in (1, 2):
        assert torch.allclose(anchors[layer][:2], expected[layer - 1][:2], atol=1e-6)
    static = analysis_anchors(embs, labels, 3, ContextrastLoss(3, (4, 4), layers=(1, 2), lambdas=(0.5, 1.0),
                                                                embed_dim=4).cross_layer_anchors)[0]
    assert not torch.allclose(static[1][:2], anchors[1][:2], atol=1e-3)  # the fusion changed the shallow anchors
