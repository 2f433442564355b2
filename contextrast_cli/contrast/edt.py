"""Exact Euclidean distance transforms of region maps, vectorised in torch.

BANE needs, for every pixel of an error region E^n, the distance to the nearest
pixel outside E^n. Error regions of different classes in one image are
disjoint, so one *region map* per image (region id per pixel, -1 outside every
region) answers all classes at once: the distance of a pixel to the nearest
pixel with a different id. Two separable passes give the exact Euclidean
distance (as ``cv2.distanceTransform(DIST_L2, DIST_MASK_PRECISE)``):

1. columns: distance to the nearest different id in the same column (run ends);
2. rows: ``D^2(y, x) = min_x' (x - x')^2 + G_{id(y,x)}(y, x')^2``, where
   ``G_n(y, x') = 0`` if ``id(y, x') != n`` else the column distance.

Pass 2 is a broadcast minimum over (B, H, W, W'), chunked over rows to bound memory; it
runs along the shorter axis.
Pixels beyond the image border do not count as "outside".
"""

import torch

INF = float("inf")
CHUNK_FACTOR = 16  # the second pass holds at most this many times the map's pixels at once


def _run_distance(ids: torch.Tensor) -> torch.Tensor:
    """Distance along the last axis to the nearest element with a different id.

    Args:
        ids: (..., L) integer ids.

    Returns:
        (..., L) float32; inf where the whole line has one id.
    """
    length = ids.shape[-1]
    pos = torch.arange(length, device=ids.device, dtype=torch.float32).expand(ids.shape)
    change_before = torch.ones_like(ids, dtype=torch.bool)
    change_before[..., 1:] = ids[..., 1:] != ids[..., :-1]  # a run starts here
    change_after = torch.ones_like(ids, dtype=torch.bool)
    change_after[..., :-1] = ids[..., :-1] != ids[..., 1:]  # a run ends here
    change_before[..., 0] = False
    change_after[..., -1] = False
    # the run holding x spans [s, e]; its nearest different neighbours are s - 1 and e + 1
    start = torch.where(change_before, pos, torch.full_like(pos, -INF)).cummax(-1).values - 1
    end = torch.where(change_after, pos, torch.full_like(pos, INF)).flip(-1).cummin(-1).values.flip(-1) + 1
    return torch.minimum(pos - start, end - pos)


def region_distance(regions: torch.Tensor, row_chunk: int | None = None) -> torch.Tensor:
    """Exact Euclidean distance of every pixel to the nearest pixel of another region id.

    The quadratic pass runs along the shorter image axis (the distance is symmetric in the
    two axes): on a 90x120 map that is 90^2 instead of 120^2 candidates per pixel.

    Args:
        regions: (B, H, W) integer region ids (-1 = background).
        row_chunk: lines processed at once in the second pass (memory B*chunk*L*L, L the shorter
            side); default: as many as keep that at most CHUNK_FACTOR times the map's pixels, so the
            pass's memory grows with the pixels, not with pixels x side.

    Returns:
        (B, H, W) float32 distances; inf where the image holds a single id.
    """
    if row_chunk is None:
        row_chunk = max(1, CHUNK_FACTOR * max(regions.shape[-2:]) // min(regions.shape[-2:]))
    if regions.shape[-1] > regions.shape[-2]:
        return _line_distance(regions.transpose(1, 2).contiguous(), row_chunk).transpose(1, 2).contiguous()
    return _line_distance(regions, row_chunk)


def _line_distance(regions: torch.Tensor, row_chunk: int) -> torch.Tensor:
    """``region_distance`` with the quadratic pass along the last axis."""
    regions = regions.long()
    column = _run_distance(regions.transpose(1, 2)).transpose(1, 2)  # (B, H, W)
    width = regions.shape[-1]
    xs = torch.arange(width, device=regions.device, dtype=torch.float32)
    dx2 = (xs[:, None] - xs[None, :]) ** 2  # (W, W')
    out = torch.empty_like(column)
    for top in range(0, regions.shape[1], row_chunk):
        ids = regions[:, top:top + row_chunk]  # (B, h, W)
        g2 = column[:, top:top + row_chunk] ** 2  # (B, h, W')
        same = ids[..., :, None] == ids[..., None, :]  # (B, h, W, W')
        cost = torch.where(same, g2[..., None, :], torch.zeros((), device=g2.device)) + dx2
        out[:, top:top + row_chunk] = cost.amin(-1).sqrt()
    return out
