"""Boundary IoU and boundary F-score: hand-computed cases and an independent OpenCV implementation."""

import math

import cv2
import numpy as np
import pytest
import torch

from contextrast_cli.evaluation.boundary import BoundaryMeter, band_radius

IGNORE = 255


def meter_of(pred, target, classes, width=0.02, tolerance=0.0075):
    meter = BoundaryMeter(len(classes), width, tolerance)
    meter.update(torch.as_tensor(pred)[None], torch.as_tensor(target)[None])
    return meter.compute(tuple(classes))


def test_boundary_iou_by_hand():
    # 4x4, band d = 1: class 1 a 2x2 block in the bottom-right corner, predicted as class 0 everywhere.
    target = np.zeros((4, 4), np.uint8)
    target[2:, 2:] = 1
    pred = np.zeros((4, 4), np.uint8)
    out = meter_of(pred, target, ["a", "b"])
    # class 0: its ground-truth band is all 12 of its pixels (each touches the border or class 1);
    # the prediction's band is the 12 border pixels; 9 border pixels are class 0: 9 / (12 + 12 - 9)
    assert out["BIoU"]["a"] == pytest.approx(9 / 15)
    assert out["BIoU"]["b"] == 0.0  # a band of 4 pixels, none predicted
    assert out["mBIoU"] == pytest.approx(0.3)


@pytest.mark.parametrize("tolerance,expected", [(0.1, 0.0), (0.28, 1.0)])
def test_boundary_f_by_hand(tolerance, expected):
    # 4x6: ground truth splits at column 3, the prediction at column 5: contours 2 pixels apart
    target = np.zeros((4, 6), np.uint8)
    target[:, 3:] = 1
    pred = np.zeros((4, 6), np.uint8)
    pred[:, 5:] = 1
    assert band_radius(tolerance, 4, 6) == (1 if expected == 0 else 2)
    out = meter_of(pred, target, ["a", "b"], tolerance=tolerance)
    assert out["BF"] == {"a": expected, "b": expected}


def test_a_class_missing_in_the_prediction_scores_zero_not_undefined():
    target = np.zeros((6, 6), np.uint8)
    target[2:4, 2:4] = 1
    out = meter_of(np.zeros((6, 6), np.uint8), target, ["a", "b", "c"])
    assert out["BF"]["b"] == 0.0 and out["BIoU"]["b"] == 0.0
    assert out["BF"]["c"] is None and out["BIoU"]["c"] is None  # absent everywhere


def official_band(mask: np.ndarray, ratio: float) -> np.ndarray:
    """Boundary IoU's ``mask_to_boundary`` (Cheng et al.): pad one zero pixel, erode d times by 3x3."""
    h, w = mask.shape
    d = max(1, int(round(ratio * math.sqrt(h * h + w * w))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask - eroded).astype(bool)


def opencv_contour(mask: np.ndarray) -> np.ndarray:
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (mask - eroded).astype(bool)


def reference_counts(preds, targets, num_classes, width, tolerance):
    """Per class (band inter, band union, pred matched, pred total, gt matched, gt total) with OpenCV."""
    counts = np.zeros((6, num_classes), np.int64)
    for pred, target in zip(preds, targets):
        valid = target != IGNORE
        h, w = target.shape
        r = max(1, int(round(tolerance * math.sqrt(h * h + w * w))))
        for n in range(num_classes):
            gt, pr = (target == n).astype(np.uint8), (pred == n).astype(np.uint8)
            gb, pb = official_band(gt, width) & valid, official_band(pr, width) & valid
            ge, pe = opencv_contour(gt), opencv_contour(pr)
            # distance of every pixel to the nearest contour pixel (exact Euclidean)
            gd = cv2.distanceTransform((~ge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) if ge.any() \
                else np.full(ge.shape, np.inf)
            pd = cv2.distanceTransform((~pe).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) if pe.any() \
                else np.full(pe.shape, np.inf)
            ge, pe = ge & valid, pe & valid
            counts[:, n] += [(gb & pb).sum(), (gb | pb).sum(), (pe & (gd <= r + 1e-6)).sum(), pe.sum(),
                             (ge & (pd <= r + 1e-6)).sum(), ge.sum()]
    return counts


def blobs(rng, shape, num_classes):
    """A piecewise-constant label map: nearest of a few random seeds, a blocky, realistic layout."""
    h, w = shape
    seeds = rng.integers(0, [h, w], size=(12, 2))
    ys, xs = np.mgrid[:h, :w]
    nearest = np.argmin((ys[..., None] - seeds[:, 0]) ** 2 + (xs[..., None] - seeds[:, 1]) ** 2, -1)
    return rng.integers(0, num_classes, 12)[nearest].astype(np.uint8)


@pytest.mark.parametrize("shape,width,tolerance", [((45, 61), 0.02, 0.0075), ((64, 80), 0.06, 0.05),
                                                   ((33, 120), 0.1, 0.03)])
def test_counts_match_an_opencv_implementation(shape, width, tolerance):
    rng = np.random.default_rng(sum(shape))
    num_classes = 4
    targets = [blobs(rng, shape, num_classes) for _ in range(3)]
    preds = [blobs(rng, shape, num_classes) if i else targets[0].copy() for i in range(3)]
    preds[0][5:15, 5:25] = 2  # a near-perfect prediction with one wrong patch
    for target in targets:
        target[rng.random(shape) < 0.03] = IGNORE
        target[-4:, :10] = IGNORE
    meter = BoundaryMeter(num_classes, width, tolerance)
    meter.update(torch.as_tensor(np.stack(preds)), torch.as_tensor(np.stack(targets)))
    expected = reference_counts(preds, targets, num_classes, width, tolerance)
    assert expected[1].min() > 0 and expected[3].min() > 0  # every class has a band and contours
    np.testing.assert_array_equal(meter.counts.numpy(), expected)
    out = meter.compute(tuple("abcd"))
    inter, union, pm, pt, gm, gt = expected.astype(float)
    assert out["mBIoU"] == pytest.approx(np.mean(inter / union), abs=1e-6)
    p, r = pm / pt, gm / gt
    assert out["mBF"] == pytest.approx(np.mean(np.nan_to_num(2 * p * r / (p + r))), abs=1e-6)


def test_a_perfect_prediction_scores_one():
    rng = np.random.default_rng(3)
    target = blobs(rng, (40, 50), 3)
    out = meter_of(target, target, ["a", "b", "c"])
    assert out["mBIoU"] == 1.0 and out["mBF"] == 1.0
