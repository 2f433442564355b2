"""Exact Euclidean distance transforms of region maps, vectorised in torch.

BANE needs, for every pixel of an error region E^n, the distance to the nearest
pixel outside E^n. Error regions of different classes in one image are
disjoint, so one *region map* per image (region id per pixel, -1 outside every
region) answers all classes at once: the distance of a pixel to the nearest
pixel with a different id. Two separable passes give the exact Euclidean
distance (as ``cv2.distanceTransform(DIST_L2, DIST_MASK_PRECISE)``):

1. along the longer axis: distance to the nearest different id on the same line (run ends);
2. along the shorter axis: ``D^2(y, x) = min_x' (x - x')^2 + G_{id(y,x)}(y, x')^2``, where
   ``G_n(y, x') = 0`` if ``id(y, x') != n`` else the pass-1 distance.

Several maps of different sizes (a network's layers) run as one: every map's lines are
gathered into one padded table per pass, a short line padded by repeating its last pixel,
which changes no distance (a repeated pixel is never nearer than the one it repeats, and a
line's end is no boundary). Pass 2 is a broadcast minimum over (lines, S, S'), chunked over
lines to bound memory. Pixels beyond the image border do not count as "outside".
"""

from functools import lru_cache

import torch

from contextrast_cli.contrast.consts import fill

INF = float("inf")
CHUNK_FACTOR = 64  # the second pass holds at most this many times the maps' pixels at once

Shapes = tuple[tuple[int, int, int], ...]


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
    start = torch.where(change_before, pos, fill(pos, -INF)).cummax(-1).values - 1
    end = torch.where(change_after, pos, fill(pos, INF)).flip(-1).cummin(-1).values.flip(-1) + 1
    return torch.minimum(pos - start, end - pos)


def region_distance(regions: torch.Tensor, row_chunk: int | None = None) -> torch.Tensor:
    """Exact Euclidean distance of every pixel to the nearest pixel of another region id.

    Args:
        regions: (B, H, W) integer region ids (-1 = background).
        row_chunk: lines processed at once in the second pass (default: as many as keep the
            pass's memory at most CHUNK_FACTOR times the map's pixels).

    Returns:
        (B, H, W) float32 distances; inf where the image holds a single id.
    """
    return region_distances(regions.reshape(-1), (tuple(regions.shape),), row_chunk).view(regions.shape)


def region_distances(ids: torch.Tensor, shapes: Shapes, line_chunk: int | None = None,
                     squared: bool = False) -> torch.Tensor:
    """``region_distance`` of several maps at once.

    Args:
        ids: (P,) the maps' region ids, each map flattened (B, H, W) in turn.
        shapes: each map's (B, H, W), in that order.
        line_chunk: pass-2 lines processed at once (default: CHUNK_FACTOR x P elements at most).
        squared: return the squared distances (integers, exact in float32 below 2^24: what a
            ranking by distance needs, without the square root's rounding).

    Returns:
        (P,) float32 distances in the same order.
    """
    lines = _lines(tuple(tuple(s) for s in shapes), str(ids.device))
    ids = ids.long()
    first = _run_distance(ids[lines.long_index])  # (N1, T): pass 1 along each map's longer axis
    short_ids, g2 = ids[lines.short_index], first.view(-1)[lines.long_back][lines.short_index] ** 2  # (N2, S)
    side = short_ids.shape[1]
    if line_chunk is None:
        line_chunk = max(1, CHUNK_FACTOR * ids.numel() // (side * side))
    best = torch.empty_like(g2)
    parts = (t.split(line_chunk) for t in (short_ids[:, :, None], short_ids[:, None, :], g2[:, None, :], best))
    for left, right, cost, out in zip(*parts):  # (n, S, S') at a time
        torch.amin(torch.where(left == right, cost, fill(cost, 0.0)).add_(lines.dx2), -1, out=out)
    squares = best.view(-1)[lines.short_back]
    return squares if squared else squares.sqrt()


class _Lines:
    """Where each map's lines lie in the flat (P,) array: ``long_index`` (N1, T) and ``short_index``
    (N2, S) gather the lines of pass 1 and pass 2 (short ones padded by repeating their last pixel);
    ``long_back`` / ``short_back`` (P,) find each pixel in those tables; ``dx2`` (S, S') the squared
    offsets along a pass-2 line."""

    def __init__(self, shapes: Shapes, device: str) -> None:
        long_side = max(max(h, w) for _, h, w in shapes)
        short_side = max(min(h, w) for _, h, w in shapes)
        tables = {"long": ([], []), "short": ([], [])}
        offset, counts = 0, {"long": 0, "short": 0}
        for batch, height, width in shapes:
            pixel = offset + torch.arange(batch * height * width).view(batch, height, width)
            along_rows = pixel  # lines along x, one per (b, y)
            along_cols = pixel.transpose(1, 2)  # lines along y, one per (b, x)
            longer, shorter = (along_rows, along_cols) if width > height else (along_cols, along_rows)
            for name, table, side in (("long", longer, long_side), ("short", shorter, short_side)):
                flat = table.reshape(-1, table.shape[-1])  # (lines, length)
                padded = flat[:, torch.arange(side).clamp_max(flat.shape[1] - 1)]
                slot = (counts[name] + torch.arange(flat.shape[0]))[:, None] * side + torch.arange(flat.shape[1])
                tables[name][0].append(padded)
                tables[name][1].append((flat.reshape(-1), slot.reshape(-1)))
                counts[name] += flat.shape[0]
            offset += batch * height * width
        for name in tables:
            pixels, slots = (torch.cat(part) for part in zip(*tables[name][1]))
            back = torch.empty(offset, dtype=torch.long).index_put_((pixels,), slots)
            setattr(self, f"{name}_index", torch.cat(tables[name][0]).to(device))
            setattr(self, f"{name}_back", back.to(device))
        xs = torch.arange(short_side, dtype=torch.float32)
        self.dx2 = ((xs[:, None] - xs[None, :]) ** 2).to(device)


@lru_cache(maxsize=16)
def _lines(shapes: Shapes, device: str) -> _Lines:
    """The line tables of ``shapes`` (built once per geometry and device)."""
    return _Lines(shapes, device)
