"""What the evaluation protocol's parts cost per image, side by side in one run: the network's
whole-image prediction, sliding-window prediction, the boundary metrics (boundary IoU + F-score)
and the feature-space probe (A / U), on synthetic street scenes at the preset's size.

    python benchmarks/eval_protocol.py [--preset camvid-lite] [--size 360x480] [--images 8] [--rounds 3]

Each round times every part over the same images in turn; the medians over rounds are reported,
with each part's time relative to the whole-image prediction.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, scene_batch  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.evaluation.boundary import BoundaryMeter  # noqa: E402
from contextrast_cli.evaluation.feature_space import FeatureProbe, FeatureSpaceMeter  # noqa: E402
from contextrast_cli.evaluation.inference import predict_probs  # noqa: E402
from contextrast_cli.models.registry import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="camvid-lite")
    parser.add_argument("--size", default="360x480")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    cfg = resolve_config(args.preset, flags={"model.pretrained": False})
    num_classes = 11
    model = build_model(cfg.model, num_classes, cfg.data.mean, cfg.data.std).eval()
    criterion = build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
    heads = dict(zip(criterion.layers, criterion.eval().heads)) if criterion is not None else None
    images, labels = scene_batch(args.images, height, width, num_classes=num_classes)
    pred = torch.randint(0, num_classes, labels.shape)
    with torch.no_grad():
        pred = predict_probs(model, images[:1], cfg.eval).argmax(1).expand_as(labels).clone()
    whole = cfg.eval.model_copy(update={"mode": "whole"})
    slide = cfg.eval.model_copy(update={"mode": "slide", "crop": tuple(cfg.data.crop_size), "stride": None})
    parts = {
        "predict (whole image)": lambda i: predict_probs(model, images[i:i + 1], whole),
        f"predict (slide {cfg.data.crop_size[0]}x{cfg.data.crop_size[1]})": lambda i: predict_probs(
            model, images[i:i + 1], slide),
        "boundary IoU + F-score": lambda i: BoundaryMeter(num_classes).update(pred[i:i + 1], labels[i:i + 1]),
        "features A/U probe": lambda i: FeatureProbe(model, FeatureSpaceMeter(num_classes), heads).update(
            images[i:i + 1], labels[i:i + 1]),
    }
    times = {name: [] for name in parts}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, part in parts.items():
                start = time.perf_counter()
                for i in range(args.images):
                    part(i)
                times[name].append((time.perf_counter() - start) / args.images)
    base = statistics.median(times["predict (whole image)"])
    report = {"preset": args.preset, "size": [height, width], "images": args.images, "rounds": args.rounds,
              "machine": machine(torch.device("cpu")),
              "ms_per_image": {n: round(statistics.median(t) * 1000, 1) for n, t in times.items()},
              "relative_to_whole": {n: round(statistics.median(t) / base, 3) for n, t in times.items()}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
