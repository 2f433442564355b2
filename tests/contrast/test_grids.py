"""The stacked nearest resizes equal F.interpolate's nearest mode, layer by layer."""

import pytest
import torch
import torch.nn.functional as F

from contextrast_cli.contrast.grids import stacked_labels, stacked_predictions


def nearest(maps: torch.Tensor, size) -> torch.Tensor:
    """The independent reference: ``F.interpolate(mode="nearest")`` of (B, H, W) ids, flattened."""
    return F.interpolate(maps[:, None].double(), size=size, mode="nearest")[:, 0].long().reshape(-1)


@pytest.mark.parametrize("source, sizes", [
    ((360, 480), [(90, 120), (45, 60), (23, 30), (12, 15)]),  # a camvid input: whole and odd ratios
    ((64, 96), [(16, 24), (8, 12), (4, 6), (2, 3)]),  # every layer on the finest one's grid
    ((37, 53), [(10, 14), (37, 53), (5, 7)]),  # neither, the source size itself among them
])
def test_stacked_labels_and_predictions_are_each_layers_nearest_resize(source, sizes):
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 255, (2, *source), generator=generator)
    logits = torch.randn(2, 7, *source, generator=generator)
    shapes = tuple((2, *size) for size in sizes)
    want_labels = torch.cat([nearest(labels, size) for size in sizes])
    want_pred = torch.cat([nearest(logits.argmax(1), size) for size in sizes])
    assert torch.equal(stacked_labels(labels, shapes), want_labels)
    assert torch.equal(stacked_predictions(logits, shapes), want_pred)
