"""The projection heads' L2 normalisation, forward + backward: ``F.normalize`` (autograd
through the division and the norm) vs the heads' fused ``l2_normalize``, side by side in
one run, on the embedding maps of ResNet-50's four taps at 360x480 (256 channels; strides
4, 8, 8, 8 at output stride 8).

    python benchmarks/l2_normalize.py [--batch 8] [--repeats 9]
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
from contextrast_cli.contrast.heads import l2_normalize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [(90, 120), (45, 60), (45, 60), (45, 60)]
    maps = [torch.randn(args.batch, 256, h, w, device=device) for h, w in sizes]
    grads = [torch.randn_like(m) for m in maps]
    variants = {"F.normalize": lambda z: F.normalize(z, dim=1), "l2_normalize": l2_normalize}

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for z, g in zip(maps, grads):
            leaf = z.detach().requires_grad_()
            fn(leaf).backward(g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        once(fn)  # warm-up
    for _ in range(args.repeats):  # interleaved
        for name, fn in variants.items():
            times[name].append(once(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({"machine": machine(device), "batch": args.batch, "median_s": medians,
                      "speedup": medians["F.normalize"] / medians["l2_normalize"]}, indent=1))


if __name__ == "__main__":
    main()
