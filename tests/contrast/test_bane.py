"""BANE on a constructed prediction/label pair: exactly the expected pixels."""

import torch

from contextrast_cli.contrast.bane import bane_maps
from contextrast_cli.contrast.sampling import select_negatives


def test_error_masks_distances_and_selection(bane_case):
    pred, labels = (t[None] for t in bane_case)
    maps = bane_maps(pred, labels, num_classes=3, ratio=0.62)
    expected_error = torch.zeros(1, 10, 12, dtype=torch.bool)
    expected_error[0, 2:7, 2:7] = True
    expected_error[0, 8, 6:9] = True
    assert torch.equal(maps.error, expected_error)  # the ignored pixel is never an error
    block = maps.distance[0, 2:7, 2:7]
    assert block[2, 2] == 3 and block[1, 1] == 2 and block[0, 0] == 1 and block[0, 2] == 1
    # anchor 1: ceil(0.62 * 25) = 16 = exactly the outer ring of the block (distance 1)
    ring = torch.zeros(5, 5, dtype=torch.bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    assert torch.equal(maps.selected[0, 2:7, 2:7], ring)
    # anchor 2: ceil(0.62 * 3) = 2 of three equally distant pixels, first in raster order
    assert maps.selected[0, 8, 6:9].tolist() == [True, True, False]
    assert int(maps.selected.sum()) == 18


def test_negatives_take_bane_picks_then_top_up(bane_case):
    pred, labels = (t[None] for t in bane_case)
    maps = bane_maps(pred, labels, num_classes=3, ratio=0.62)
    flat_labels = labels.reshape(-1)
    sel = select_negatives(pred, labels, 3, 20, 0.62, generator=torch.Generator().manual_seed(0))
    index, valid, is_bane = sel.index, sel.valid, sel.is_bane
    # anchor 1: its 16 BANE picks plus 4 random pixels of other classes
    picks = set(index[1][is_bane[1]].tolist())
    ring_pixels = set(torch.nonzero(maps.selected.reshape(-1) & (pred.reshape(-1) == 1)).flatten().tolist())
    assert picks == ring_pixels and int(valid[1].sum()) == 20
    assert (flat_labels[index[1][valid[1]]] != 1).all() and (flat_labels[index[1][valid[1]]] != 255).all()
    # anchor 2's BANE picks are the two strip pixels; anchor 0 has none (nothing is mispredicted as 0)
    assert int(is_bane[2].sum()) == 2 and int(is_bane[0].sum()) == 0
    # without BANE every negative is random and none is flagged
    assert not select_negatives(pred, labels, 3, 20, None).is_bane.any()


def test_prediction_at_layer_size_equals_resized_argmax():
    from contextrast_cli.contrast.grids import predict_at, resize_labels

    torch.manual_seed(2)
    logits = torch.randn(2, 5, 37, 53)
    for size in ((10, 14), (5, 7), (37, 53)):
        assert torch.equal(predict_at(logits, size), resize_labels(logits.argmax(1), size))
