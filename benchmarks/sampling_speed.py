"""The contrastive loss alone, forward + backward: Contextrast (4 layers, BANE) vs the
pixel-contrast baseline (1 layer), on identical random embeddings and labels.

B = 8, 11 classes, 256-d unit embeddings; Contextrast's layers are the stride 4/8/16/32
maps of a 360x480 input (HRNet's branches), pixel-contrast uses the stride-4 map. Labels
are synthetic street scenes; the prediction BANE and the hard/easy split see is the label
map shifted by a few pixels with random wrong blobs (error regions along boundaries and
inside objects, as mid-training). The variants run interleaved, ``--repeats`` times each,
through the same loss object (``build_criterion``) the trainer calls (identity projection heads).

    python benchmarks/sampling_speed.py [--device cuda] [--repeats 20]
    python benchmarks/sampling_speed.py --plus-plus --plain      # Contextrast++, and the plain forms

Also printed: ``aten_ops``, the operators each variant dispatches (on a GPU the loss's
tensors are small enough that kernel launches, not kernels, set the wall time), and
``memory_floor_s``: what a read of the stride-4 map and a write of a fresh tensor of its
size cost on this machine, and fresh tensors the size of all four maps: the dense gradient
a loss with class-mean anchors must write (pixel-contrast writes one, the zero-filled
gradient of the stride-4 map behind its gather). ``--profile`` adds each variant's top
operators by self time (device time on a GPU).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, scene_batch  # noqa: E402
from contextrast_cli.config import ContrastConfig  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.train.objective import sum_losses  # noqa: E402

STRIDES = (4, 8, 16, 32)


def inputs(batch: int, height: int, width: int, classes: int, dim: int, device: torch.device, seed: int = 0,
           spread: bool = False, layout: str = "channels-last"):
    """Embeddings per stride (laid out as ``layout``: the projection heads make channels last),
    labels (B, H, W) and prediction logits (B, K, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    _, labels = scene_batch(batch, height, width, seed, num_classes=classes if spread else None)
    pred = labels.roll(shifts=(3, 5), dims=(1, 2))
    for _ in range(6 * batch):  # wrong blobs
        b = int(torch.randint(batch, (1,), generator=generator))
        y, x = (int(torch.randint(s - 40, (1,), generator=generator)) for s in (height, width))
        pred[b, y:y + 40, x:x + 40] = int(torch.randint(classes, (1,), generator=generator))
    logits = F.one_hot(pred, classes).permute(0, 3, 1, 2).float() * 5.0
    feats = [F.normalize(torch.randn(batch, dim, -(-height // s), -(-width // s), generator=generator), dim=1)
             for s in STRIDES]
    memory = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    return [f.to(device).contiguous(memory_format=memory) for f in feats], labels.to(device), logits.to(device)


def variants(max_anchors: int | None = None, plus_plus: bool = False, plain: bool = False) -> dict[str, ContrastConfig]:
    extra = {} if max_anchors is None else {"max_anchors": max_anchors}  # None: the default (older code: none)
    out = {
        "contextrast_4_layers_bane": ContrastConfig(method="contextrast", **extra),
        "contextrast_4_layers_no_bane": ContrastConfig(method="contextrast", bane={"enabled": False}, **extra),
        "pixel_contrast_1_layer": ContrastConfig(method="pixel-contrast", layers=(1,), lambdas=(1.0,)),
    }
    if plus_plus:  # adaptive fusion + the AA loss (the bank fills over the calls)
        out["contextrast_plus_plus"] = ContrastConfig(method="contextrast++", **extra)
    if plain:  # the plain forms (contrast/plain.py, plain_sampling.py)
        out["contextrast_plain"] = ContrastConfig(method="contextrast", implementation="plain", **extra)
        if plus_plus:
            out["contextrast_plus_plus_plain"] = ContrastConfig(method="contextrast++", implementation="plain", **extra)
    return out


def build(cfg: ContrastConfig, feats, logits) -> nn.Module:
    """The loss object the trainer builds, with identity projection heads (the loss alone)."""
    criterion = build_criterion(cfg, [f.shape[1] for f in feats], logits.shape[1])
    criterion.heads = nn.ModuleList(nn.Identity() for _ in cfg.used_layers)
    return criterion


def time_once(criterion: nn.Module, feats, labels, logits, device: torch.device) -> float:
    """Seconds of one forward + backward of ``criterion`` (built before: not timed)."""
    leaves = [f.detach().requires_grad_() for f in feats]  # detach keeps the layout
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    terms = criterion(leaves, logits, labels)
    sum_losses(terms).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def memory_floor(feats, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of: a read of the stride-4 map, a fresh copy of it, fresh copies of all maps."""
    def timed(fn) -> float:
        runs = []
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs[1:])

    return {"read_stride4": timed(lambda: feats[0].sum()),
            "fresh_write_stride4": timed(lambda: feats[0].clone()),
            "fresh_write_all_layers": timed(lambda: [f.clone() for f in feats])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--size", default="360x480", help="input HxW whose stride 4/8/16/32 maps are used")
    parser.add_argument("--max-anchors", type=int, help="contrast.max_anchors (default: the config's)")
    parser.add_argument("--spread-classes", action="store_true",
                        help="rename each image's 8 scene classes to random ids of --classes (ADE20K-like batches)")
    parser.add_argument("--layout", choices=("channels-last", "channels-first"), default="channels-last",
                        help="the embeddings' memory layout (the projection heads make channels last)")
    parser.add_argument("--static-slots", action="store_true",
                        help="time the loss with static slots on the CPU too (the GPU's path; default: the device's)")
    parser.add_argument("--plus-plus", action="store_true", help="also time Contextrast++ (adaptive fusion, AA loss)")
    parser.add_argument("--plain", action="store_true", help="also time contrast.implementation: plain")
    parser.add_argument("--profile", action="store_true",
                        help="also print each variant's top operators (torch profiler, one more call)")
    args = parser.parse_args()
    device = torch.device(args.device)
    height, width = (int(v) for v in args.size.split("x"))
    feats, labels, logits = inputs(args.batch, height, width, args.classes, args.dim, device,
                                   spread=args.spread_classes, layout=args.layout)
    chosen = variants(args.max_anchors, args.plus_plus, args.plain)
    configs = {name: build(cfg, feats, logits).to(device) for name, cfg in chosen.items()}
    for criterion in configs.values():
        if args.static_slots and hasattr(criterion, "static_slots"):
            criterion.static_slots = True
    times: dict[str, list[float]] = {name: [] for name in configs}
    for name, criterion in configs.items():  # warm-up (allocator, kernels, the cached layouts)
        time_once(criterion, feats, labels, logits, device)
    for _ in range(args.repeats):
        for name, criterion in configs.items():
            times[name].append(time_once(criterion, feats, labels, logits, device))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["pixel_contrast_1_layer"]
    present = len(set(labels.unique().tolist()) - {255})
    print(json.dumps({"machine": machine(device), "batch": args.batch, "classes": args.classes, "size": args.size,
                      "classes_present": present, "max_anchors": args.max_anchors, "dim": args.dim, "layout": args.layout,
                      "repeats": args.repeats, "static_slots": args.static_slots, "median_s": medians,
                      "ratio_to_pixel_contrast": {name: m / base for name, m in medians.items()},
                      "aten_ops": {name: count_ops(criterion, feats, labels, logits, device) for name, criterion in configs.items()},
                      "memory_floor_s": memory_floor(feats, args.repeats, device)}, indent=1))
    if args.profile:
        for name, criterion in configs.items():
            print(f"\n## {name}\n{profile_once(criterion, feats, labels, logits, device)}")


def count_ops(criterion: nn.Module, feats, labels, logits, device: torch.device) -> int:
    """ATen operators one forward + backward dispatches (views included, which launch no
    kernel; building the loss object not counted): on a GPU, with the loss's small tensors,
    their dispatch sets the wall time. Counted on the GPU's path (static slots) on any device."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    static = getattr(criterion, "static_slots", None)
    if hasattr(criterion, "static_slots"):
        criterion.static_slots = True  # the path a GPU runs (the CPU's sizes its slots by reading counts)
    try:
        with Counter() as counter:
            time_once(criterion, feats, labels, logits, device)
    finally:
        if hasattr(criterion, "static_slots"):
            criterion.static_slots = static
    return counter.calls


def profile_once(criterion: nn.Module, feats, labels, logits, device: torch.device) -> str:
    """Top operators of one forward + backward, by self time on the device that ran them."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        time_once(criterion, feats, labels, logits, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60)


if __name__ == "__main__":
    main()
