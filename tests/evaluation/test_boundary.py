"""Boundary IoU and boundary F-score: hand-computed cases, void as "don't care" (issue 27), and an
independent OpenCV implementation (one binary mask per class, void added to it before eroding)."""

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


def counts_of(pred, target, num_classes, width=0.02, tolerance=0.0075):
    meter = BoundaryMeter(num_classes, width, tolerance)
    meter.update(torch.as_tensor(pred)[None], torch.as_tensor(target)[None])
    return meter.counts.numpy()


@pytest.mark.parametrize("in_void", [0, 1])
def test_one_class_plus_void_has_no_boundary_but_the_image_border(in_void):
    # 5x6 (d = r = 1): all class 0, a void hole (rows 1-3, cols 1-2) and a void last column.
    target = np.zeros((5, 6), np.uint8)
    target[1:4, 1:3] = IGNORE
    target[:, 5] = IGNORE
    pred = np.where(target == IGNORE, in_void, 0).astype(np.uint8)  # whatever is said inside void
    counts = counts_of(pred, target, 2)
    # class 0's band: the 13 labelled pixels of the image's frame (18 minus the void column's 5);
    # the pixels around the hole and beside the void column are no band, and nothing is a contour
    np.testing.assert_array_equal(counts[:, 0], [13, 13, 0, 0, 0, 0])
    np.testing.assert_array_equal(counts[:, 1], 0)  # class 1 predicted only inside void: nowhere
    out = meter_of(pred, target, ["a", "b"])
    assert out["BIoU"] == {"a": 1.0, "b": None} and out["BF"] == {"a": None, "b": None}
    assert out["mBIoU"] == 1.0 and out["mBF"] is None


@pytest.mark.parametrize("void_pred", ["continued", "third class", "noise"])
def test_an_edge_against_a_void_strip_is_no_boundary(void_pred):
    # 6x8 (d = r = 1): class 0 in columns 0-3, class 1 in 4-7, void in rows 4-5 (a strip under both).
    target = np.zeros((6, 8), np.uint8)
    target[:, 4:] = 1
    pred = target.copy()
    if void_pred == "third class":  # a predicted contour runs along the void strip, and inside it
        pred[4:] = 2
    elif void_pred == "noise":
        pred[4:] = np.random.default_rng(0).integers(0, 3, (2, 8))
    target[4:] = IGNORE
    counts = counts_of(pred, target, 3)
    # class 0's band: row 0 (4, the border), column 0 rows 1-3 (3, the border), column 3 rows 1-3
    # (3, beside class 1); row 3 beside the strip is not in it. Its contour: column 3 rows 0-3.
    np.testing.assert_array_equal(counts[:, 0], [10, 10, 4, 4, 4, 4])
    np.testing.assert_array_equal(counts[:, 1], [10, 10, 4, 4, 4, 4])  # the mirror image
    np.testing.assert_array_equal(counts[:, 2], 0)  # predicted only inside void
    out = meter_of(pred, target, ["a", "b", "c"])
    assert out["BIoU"] == {"a": 1.0, "b": 1.0, "c": None} and out["BF"] == {"a": 1.0, "b": 1.0, "c": None}


def test_a_shifted_edge_is_counted_on_the_labelled_rows_only():
    # the strip case, class 0 predicted one column too far: column 4, down through the void rows
    target = np.zeros((6, 8), np.uint8)
    target[:, 4:] = 1
    pred = target.copy()
    pred[:, 4] = 0
    target[4:] = IGNORE
    counts = counts_of(pred, target, 2)
    # predicted band of class 0: row 0 (5) + columns 0 and 4, rows 1-3 (6) = 11, of which row 0's
    # first 4 and column 0 are the truth's (7; union 10 + 11 - 7); class 1: row 0 (3) + columns 5
    # and 7, rows 1-3 (6) = 9, sharing row 0 and column 7 (6; union 10 + 9 - 6). Contours: columns
    # 4 (class 0) and 5 (class 1), rows 0-3 only (rows 4-5 are void), one pixel from the truth's
    # columns 3 and 4: all matched at r = 1.
    np.testing.assert_array_equal(counts[:, 0], [7, 14, 4, 4, 4, 4])
    np.testing.assert_array_equal(counts[:, 1], [6, 13, 4, 4, 4, 4])


@pytest.mark.parametrize("width,band", [(0.02, ([10, 10], [8, 8])), (0.15, ([38, 38], [34, 34]))])
def test_two_classes_across_a_void_line_meet_within_the_radius_only(width, band):
    # 6x6 at d = 1 or 10x10 at d = 2: class 0 above a one-pixel void row, class 1 below it.
    # At d = 1 the row hides their edge (bands of the border only); at d = 2 the rows next to the
    # void row see the other class across it. Contours (8-neighbours) never see across: none.
    size = 6 if width == 0.02 else 10
    assert band_radius(width, size, size) == (1 if size == 6 else 2)
    target = np.zeros((size, size), np.uint8)
    target[size // 2 + 1:] = 1
    target[size // 2] = IGNORE
    pred = np.where(target == IGNORE, 0, target).astype(np.uint8)
    counts = counts_of(pred, target, 2, width=width)
    np.testing.assert_array_equal(counts[:2, 0], band[0])
    np.testing.assert_array_equal(counts[:2, 1], band[1])
    np.testing.assert_array_equal(counts[2:], 0)


def mask_to_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Boundary IoU's ``mask_to_boundary`` (Cheng et al.): pad one zero pixel, erode d times by 3x3."""
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask - eroded).astype(bool)


def opencv_contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with an 8-neighbour outside it (the image border is not one)."""
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (mask - eroded).astype(bool)


def distance_to(points: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the nearest of ``points`` (inf without any)."""
    if not points.any():
        return np.full(points.shape, np.inf)
    return cv2.distanceTransform((~points).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def reference_counts(preds, targets, num_classes, width, tolerance):
    """Per class (band inter, band union, pred matched, pred total, gt matched, gt total) with OpenCV.

    Void as "don't care": per class, the void pixels join the class's mask (they are "the same
    as me", whichever class asks) before it is eroded, and the band or contour is kept on the
    class's own labelled pixels; the prediction is read on labelled pixels only.
    """
    counts = np.zeros((6, num_classes), np.int64)
    for pred, target in zip(preds, targets):
        void = target == IGNORE
        h, w = target.shape
        d = max(1, int(round(width * math.sqrt(h * h + w * w))))
        r = max(1, int(round(tolerance * math.sqrt(h * h + w * w))))
        for n in range(num_classes):
            gt, pr = target == n, (pred == n) & ~void
            gb = mask_to_boundary((gt | void).astype(np.uint8), d) & gt
            pb = mask_to_boundary((pr | void).astype(np.uint8), d) & pr
            ge = opencv_contour((gt | void).astype(np.uint8)) & gt
            pe = opencv_contour((pr | void).astype(np.uint8)) & pr
            gd, pd = distance_to(ge), distance_to(pe)
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


def with_void(rng, label):
    """Void as in real label maps: speckle, a block at the bottom, and lines one or two pixels wide
    along part of the edges between classes (regions separated by a thin void line)."""
    h, w = label.shape
    out = label.copy()
    edge = (cv2.dilate(label, np.ones((3, 3), np.uint8)) != cv2.erode(label, np.ones((3, 3), np.uint8)))
    lines = edge & (np.arange(w)[None] // 8 % 3 == rng.integers(0, 3))
    if rng.random() < 0.5:
        lines = cv2.dilate(lines.astype(np.uint8), np.ones((1, 2), np.uint8)).astype(bool)
    out[lines | (rng.random((h, w)) < 0.03)] = IGNORE
    out[-rng.integers(2, 6):, :rng.integers(5, 15)] = IGNORE
    return out


def labelled_pairs(seed, shape, num_classes):
    rng = np.random.default_rng(seed)
    clean = [blobs(rng, shape, num_classes) for _ in range(3)]
    targets = [with_void(rng, label) for label in clean]
    preds = [np.roll(clean[0], (1, 2), (0, 1)), clean[1].copy(), blobs(rng, shape, num_classes)]
    preds[1][5:15, 5:25] = 2  # a near-perfect prediction with one wrong patch
    for pred, target in zip(preds, targets):  # whatever is said inside void: noise
        void = target == IGNORE
        pred[void] = rng.integers(0, num_classes, void.sum())
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape,width,tolerance", [((45, 61), 0.02, 0.0075), ((64, 80), 0.06, 0.05),
                                                   ((33, 120), 0.1, 0.03), ((90, 70), 0.04, 0.02)])
def test_counts_match_an_opencv_implementation(seed, shape, width, tolerance):
    num_classes = 4
    preds, targets = labelled_pairs(seed * 1000 + sum(shape), shape, num_classes)
    meter = BoundaryMeter(num_classes, width, tolerance)
    meter.update(torch.as_tensor(np.stack(preds)), torch.as_tensor(np.stack(targets)))
    expected = reference_counts(preds, targets, num_classes, width, tolerance)
    assert expected[1].min() > 0 and expected[3].min() > 0  # every class has a band and contours
    np.testing.assert_array_equal(meter.counts.numpy(), expected)
    out = meter.compute(tuple("abcd"))
    inter, union, pm, pt, gm, gt = expected.astype(float)
    assert out["mBIoU"] == pytest.approx(np.mean(inter / union), abs=1e-6)
    with np.errstate(invalid="ignore"):  # P = R = 0: F = 0
        p, r = pm / pt, gm / gt
        assert out["mBF"] == pytest.approx(np.mean(np.nan_to_num(2 * p * r / (p + r))), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_what_the_prediction_says_inside_void_changes_no_count(seed):
    rng = np.random.default_rng(seed)
    preds, targets = labelled_pairs(seed, (48, 64), 4)
    other = [np.where(t == IGNORE, rng.integers(0, 4, t.shape), p).astype(np.uint8) for p, t in zip(preds, targets)]
    first, second = BoundaryMeter(4), BoundaryMeter(4)
    first.update(torch.as_tensor(np.stack(preds)), torch.as_tensor(np.stack(targets)))
    second.update(torch.as_tensor(np.stack(other)), torch.as_tensor(np.stack(targets)))
    np.testing.assert_array_equal(first.counts.numpy(), second.counts.numpy())


def test_a_prediction_right_on_every_labelled_pixel_scores_one():
    rng = np.random.default_rng(5)
    target = with_void(rng, blobs(rng, (40, 50), 3))
    pred = np.where(target == IGNORE, rng.integers(0, 3, target.shape), target).astype(np.uint8)
    out = meter_of(pred, target, ["a", "b", "c"], width=0.05, tolerance=0.02)
    assert out["mBIoU"] == 1.0 and out["mBF"] == 1.0


def test_a_perfect_prediction_scores_one():
    rng = np.random.default_rng(3)
    target = blobs(rng, (40, 50), 3)
    out = meter_of(target, target, ["a", "b", "c"])
    assert out["mBIoU"] == 1.0 and out["mBF"] == 1.0
