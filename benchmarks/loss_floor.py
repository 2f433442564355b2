"""What the Contextrast loss cannot avoid at its default sample counts, timed beside the whole
pixel-contrast baseline in one process: a floor under "the 4-layer + BANE loss at most as slow as
the 1-layer baseline".

Parts, each one forward + backward (or forward only where nothing is differentiated), on the
CamVid-size inputs of ``sampling_speed.py`` (B=8, 360x480, K=11, 256-d, channels last):

* ``class_sums``: every labelled pixel of the four maps summed into its class (the class-mean
  anchors) and the whole-map gradient written back: the O(P x D) part that is the method;
* ``+ real_rows``: plus gathering only the *real* sampled rows of one draw (positives, BANE picks,
  the pool up to its last pixel taken: no padding) and their cosines with the anchors;
* ``bane_and_sorts``: the exact distance transform over the four layers' error maps and three
  sorts of every pixel's integer key (positives, BANE ranking, pools);
* the whole loss (this tree's CPU path) and the whole pixel-contrast baseline.

    OMP_NUM_THREADS=1 python benchmarks/loss_floor.py [--repeats 7]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine  # noqa: E402
from benchmarks.sampling_speed import build, inputs, time_once, variants  # noqa: E402
from contextrast_cli.contrast.ccl import pixel_bins  # noqa: E402
from contextrast_cli.contrast.edt import region_distances  # noqa: E402
from contextrast_cli.contrast.grids import stacked_labels, stacked_predictions  # noqa: E402
from contextrast_cli.contrast.rows import row_cosines, sampled_layers  # noqa: E402
from contextrast_cli.contrast.sampling import sample_stacked  # noqa: E402

K = 11


def real_reads(feats, labels, logits):
    """The real samples of one draw as ``sampled_layers`` reads: per layer its valid pair slots,
    then every layer's pool up to the last pixel any anchor takes."""
    shapes = tuple((f.shape[0], *f.shape[-2:]) for f in feats)
    bins = pixel_bins(stacked_labels(labels, shapes), K)
    samples = sample_stacked(shapes, bins, stacked_predictions(logits, shapes), K, 1024, 2048, 0.5, static_slots=True)
    lay, reads, anchors, start = samples.layout, [], [], 0
    for index in range(len(shapes)):
        pos, _, spill = lay.pair_slices(index)
        valid = samples.valid[pos.start:spill.stop]
        pixels = samples.index[pos.start:spill.stop][valid]
        anchors.append(samples.anchor[pos.start:spill.stop][valid])
        reads.append([(pixels, slice(start, start + pixels.numel()))])
        start += pixels.numel()
    width = int(max(samples.topup[i].any(0).nonzero().max() + 1 for i in range(len(shapes))))
    for index in range(len(shapes)):
        reads[index].append((samples.pool[index, :width], slice(start, start + width)))
        start += width
    return bins, shapes, samples, reads, torch.cat(anchors), start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = torch.device("cpu")
    feats, labels, logits = inputs(8, 360, 480, K, 256, device)
    losses = {name: build(variants()[name], feats, logits) for name in ("pixel_contrast_1_layer",
                                                                        "contextrast_4_layers_bane")}
    bins, shapes, samples, reads, pair_anchor, rows = real_reads(feats, labels, logits)
    pred = stacked_predictions(logits, shapes)
    errors = torch.where((pred != bins) & (bins < K), pred, -1)
    keys = torch.randint(1 << 40, (bins.numel(),))

    def sums_only() -> None:
        leaves = [f.detach().requires_grad_() for f in feats]
        sums, _ = sampled_layers(leaves, bins, [[] for _ in leaves], 0, K)
        sums.sum().backward()

    def with_rows() -> None:
        leaves = [f.detach().requires_grad_() for f in feats]
        sums, table = sampled_layers(leaves, bins, reads, rows, K)
        anchors = F.normalize(sums, dim=-1).flatten(0, 1)
        pair_cos, pool_cos = row_cosines(anchors, table, pair_anchor, len(shapes))
        (pair_cos.sum() + pool_cos.sum()).backward()

    def bane_and_sorts() -> None:
        region_distances(errors, shapes, squared=True)
        for _ in range(3):
            keys.argsort()

    parts = {"class_sums": sums_only, "class_sums + real_rows": with_rows, "bane_and_sorts": bane_and_sorts,
             **{name: (lambda loss=loss: time_once(loss, feats, labels, logits, device)) for name, loss in losses.items()}}
    times: dict[str, list[float]] = {name: [] for name in parts}
    for fn in parts.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in parts.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["pixel_contrast_1_layer"]
    print(json.dumps({"machine": machine(device), "real_rows": rows, "static_rows": samples.rows,
                      "median_s": medians, "ratio_to_pixel_contrast": {n: m / base for n, m in medians.items()},
                      "floor_ratio": (medians["class_sums + real_rows"] + medians["bane_and_sorts"]) / base},
                     indent=1))


if __name__ == "__main__":
    main()
