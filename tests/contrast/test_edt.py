"""The vectorised EDT against OpenCV's exact transform."""

import cv2
import numpy as np
import pytest
import torch

from contextrast_cli.contrast.edt import region_distance


def cv2_edt(mask: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


@pytest.mark.parametrize("seed", range(6))
def test_binary_masks_match_opencv(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(5, 40, size=2)
    noise = cv2.GaussianBlur(rng.random((height, width)), (0, 0), 2.0)
    mask = noise > np.quantile(noise, rng.uniform(0.3, 0.7))
    mask[rng.integers(0, height), :] = False  # at least one background pixel
    ours = region_distance(torch.from_numpy(np.where(mask, 0, -1))[None])[0].numpy()
    assert np.abs(ours[mask] - cv2_edt(mask)[mask]).max() < 1e-3


@pytest.mark.parametrize("shape", [(2, 23, 31), (2, 31, 23)])  # the quadratic pass along W, then along H
def test_each_region_measured_against_its_own_outside(shape):
    rng = np.random.default_rng(7)
    regions = rng.integers(-1, 3, size=shape)  # raw noise: many tiny regions stress the runs
    ours = region_distance(torch.from_numpy(regions)).numpy()
    for b in range(2):
        for region in range(3):
            inside = regions[b] == region
            expected = cv2_edt(inside)
            assert np.abs(ours[b][inside] - expected[inside]).max() < 1e-3


@pytest.mark.parametrize("shape", [(3, 37, 29), (3, 29, 37)])
def test_row_chunking_does_not_change_the_result(shape):
    regions = torch.randint(-1, 4, shape)
    assert torch.equal(region_distance(regions, row_chunk=5), region_distance(regions, row_chunk=64))


def test_hand_computed_square():
    regions = -torch.ones(1, 7, 7, dtype=torch.long)
    regions[0, 1:6, 1:6] = 2
    d = region_distance(regions)[0]
    assert d[3, 3] == 3 and d[1, 1] == 1 and d[2, 3] == 2
    assert d[0, 0] == pytest.approx(2 ** 0.5)  # background measures to the nearest region pixel too
