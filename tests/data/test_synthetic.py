"""Tests for the procedural street-scene generator."""

import cv2
import numpy as np
import pytest

from contextrast_cli.data import synthetic
from contextrast_cli.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_PALETTE,
    render_scene,
)

NUM_CLASSES = len(SYNTHETIC_CLASSES)
POLE = SYNTHETIC_CLASSES.index("pole")


@pytest.fixture(scope="module")
def scenes():
    """20 scenes of 120x160 from seed 3."""
    return [render_scene(3, i, 120, 160) for i in range(20)]


def test_classes_and_palette():
    assert SYNTHETIC_CLASSES == (
        "sky", "building", "road", "sidewalk", "tree", "car", "pole", "person")
    assert len(SYNTHETIC_PALETTE) == NUM_CLASSES
    assert len(set(SYNTHETIC_PALETTE)) == NUM_CLASSES
    assert SYNTHETIC_PALETTE[SYNTHETIC_CLASSES.index("road")] == (128, 64, 128)
    assert SYNTHETIC_PALETTE[POLE] == (192, 192, 128)


def test_deterministic_in_seed_and_index():
    img_a, lab_a = render_scene(7, 5, 120, 160)
    render_scene(7, 4, 120, 160)  # generation order must not matter
    img_b, lab_b = render_scene(7, 5, 120, 160)
    np.testing.assert_array_equal(img_a, img_b)
    np.testing.assert_array_equal(lab_a, lab_b)


def test_different_index_or_seed_gives_different_scene():
    img_a, lab_a = render_scene(7, 5, 120, 160)
    for img_b, lab_b in (render_scene(7, 6, 120, 160), render_scene(8, 5, 120, 160)):
        assert not np.array_equal(img_a, img_b)
        assert not np.array_equal(lab_a, lab_b)


@pytest.mark.parametrize("height,width", [(120, 160), (360, 480), (97, 131)])
def test_shapes_dtypes_and_label_range(height, width):
    img, lab = render_scene(0, 1, height, width)
    assert img.shape == (height, width, 3) and img.dtype == np.uint8
    assert lab.shape == (height, width) and lab.dtype == np.uint8
    assert set(np.unique(lab).tolist()) <= set(range(NUM_CLASSES))
    assert img.std() > 10  # an actual picture, not a flat fill


def test_every_class_appears_in_most_scenes(scenes):
    present = np.zeros(NUM_CLASSES)
    for _, lab in scenes:
        present[np.unique(lab)] += 1
    for name, count in zip(SYNTHETIC_CLASSES, present):
        assert count >= 0.5 * len(scenes), (name, count)
    for name in ("sky", "building", "road"):
        assert present[SYNTHETIC_CLASSES.index(name)] == len(scenes), name


def _max_run(mask_row):
    """Longest run of True in a 1-D boolean array."""
    padded = np.concatenate([[0], mask_row.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


@pytest.mark.parametrize("height,width", [(120, 160), (360, 480), (97, 131)])
def test_poles_are_thin(height, width):
    seen = 0
    for i in range(8):
        _, lab = render_scene(11, i, height, width)
        pole = lab == POLE
        seen += pole.any()
        widest = max((_max_run(row) for row in pole if row.any()), default=0)
        assert widest <= max(6, width // 25), (i, widest)
    assert seen >= 4


def test_label_follows_painter_order_without_antialiasing():
    for i in range(5):
        canvas = synthetic._layout(np.random.default_rng([5, i]), 120, 160)
        classes = np.asarray(canvas.classes)
        expected = classes[canvas.inst]
        _, lab = render_scene(5, i, 120, 160)
        np.testing.assert_array_equal(lab, expected)
        visible = set(classes[np.unique(canvas.inst)].tolist())
        assert set(np.unique(lab).tolist()) == visible


def _sliver_ratio(lab):
    """Share of horizontal label edges that are 1-px runs (AA halos)."""
    lab = lab.astype(int)
    left, mid, right = lab[:, :-2], lab[:, 1:-1], lab[:, 2:]
    slivers = ((mid != left) & (mid != right)).sum()
    return slivers / max(1, (lab[:, 1:] != lab[:, :-1]).sum())


def test_label_edges_are_not_antialiased():
    # An anti-aliased label leaves 1-px rings of blended ("between") class ids
    # along every edge; exact drawing leaves such slivers only at shape tips.
    for i in range(5):
        _, lab = render_scene(2, i, 360, 480)
        assert _sliver_ratio(lab) < 0.05, i
    aa = lab.copy()  # control: the metric catches anti-aliased drawing
    cv2.circle(aa, (200, 200), 50, 7, -1, cv2.LINE_AA)
    cv2.line(aa, (10, 300), (400, 250), 6, 5, cv2.LINE_AA)
    assert _sliver_ratio(aa) > 0.05


def test_not_trivially_separable_by_colour():
    train = [render_scene(21, i, 120, 160) for i in range(10)]
    test = [render_scene(22, i, 120, 160) for i in range(10)]
    pix = np.concatenate([img.reshape(-1, 3) for img, _ in train]).astype(float)
    lab = np.concatenate([l.ravel() for _, l in train])
    cents = np.stack([pix[lab == c].mean(0) for c in range(NUM_CLASSES)])
    x = np.concatenate([img.reshape(-1, 3) for img, _ in test]).astype(float)
    y = np.concatenate([l.ravel() for _, l in test])
    pred = ((x[:, None, :] - cents[None]) ** 2).sum(-1).argmin(1)
    acc = (pred == y).mean()
    assert 0.2 < acc < 0.9, acc
