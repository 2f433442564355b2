"""Boundary metrics (boundary IoU + F-score, ``BoundaryMeter.update``) per image on street
scenes with void, this checkout's code against a baseline revision's, interleaved in one run.

    python benchmarks/boundary_speed.py [--size 360x480] [--classes 11] [--images 20] [--rounds 5]
                                        [--baseline HEAD] [--device cpu]

The labels are synthetic street scenes (``scene_batch``) with void as in CamVid and Cityscapes:
thin void lines along a third of the region edges and a void block at the bottom (the ego
vehicle). The prediction is the scene shifted by a few pixels, with void filled. Each round
times the current meter and the baseline's image by image, in alternating order (a shared
machine's load then hits both alike); the median and the fastest round's time per image are
reported, with their ratios (current / baseline). ``--baseline`` loads
``contextrast_cli/evaluation/boundary.py`` from that git revision (nothing is checked out).
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, scene_batch  # noqa: E402
from contextrast_cli.config.datasets import IGNORE_INDEX  # noqa: E402
from contextrast_cli.evaluation.boundary import BoundaryMeter  # noqa: E402


def baseline_meter(revision: str, folder: Path) -> type:
    """``BoundaryMeter`` of ``boundary.py`` at ``revision``, imported from a temporary copy."""
    source = subprocess.run(["git", "show", f"{revision}:contextrast_cli/evaluation/boundary.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    path = folder / "boundary_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("boundary_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BoundaryMeter


def scenes_with_void(images: int, height: int, width: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) (B, H, W): scenes with void lines and an ego-vehicle block; the prediction
    is the void-free scene shifted by (3, 4) pixels."""
    _, labels = scene_batch(images, height, width, num_classes=num_classes)
    pred = labels.roll((3, 4), (1, 2))
    x = labels[:, None].float()
    edge = (F.max_pool2d(x, 3, 1, 1) != x) | (F.max_pool2d(-x, 3, 1, 1) != -x)  # (B, 1, H, W)
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(images, 1, height // 16 + 1, width // 16 + 1, generator=generator) < 0.33
    pick = F.interpolate(coarse.float(), scale_factor=16.0)[..., :height, :width] > 0
    target = labels.masked_fill((edge & pick)[:, 0], IGNORE_INDEX)
    target[:, height * 7 // 8:, width // 4: width * 3 // 4] = IGNORE_INDEX
    return pred, target


def timed(meter, pred: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds one ``meter.update`` takes (synchronised on a GPU)."""
    start = time.perf_counter()
    meter.update(pred, target)
    if pred.device.type == "cuda":
        torch.cuda.synchronize(pred.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="360x480")
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    device = torch.device(args.device)
    pred, target = (t.to(device) for t in scenes_with_void(args.images, height, width, args.classes))
    with tempfile.TemporaryDirectory() as folder:
        meters = {"current": BoundaryMeter, "baseline": baseline_meter(args.baseline, Path(folder))}
        times = {name: [] for name in meters}
        for round_ in range(args.rounds):
            spent = dict.fromkeys(meters, 0.0)
            for i in range(args.images):  # image by image, in alternating order: load hits both alike
                for name in sorted(meters, reverse=(round_ + i) % 2 == 1):
                    spent[name] += timed(meters[name](args.classes, device=device), pred[i:i + 1], target[i:i + 1])
            for name in meters:
                times[name].append(spent[name] / args.images)
    ms = {name: round(statistics.median(t) * 1000, 2) for name, t in times.items()}
    fastest = {name: round(min(t) * 1000, 2) for name, t in times.items()}
    report = {"size": [height, width], "classes": args.classes, "images": args.images, "rounds": args.rounds,
              "void_share": round(float((target == IGNORE_INDEX).float().mean()), 4),
              "baseline": args.baseline, "machine": machine(device),
              "ms_per_image_median": ms, "ms_per_image_fastest_round": fastest,
              "ratio_median": round(ms["current"] / ms["baseline"], 3),
              "ratio_fastest": round(fastest["current"] / fastest["baseline"], 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
