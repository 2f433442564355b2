"""Training-step time and peak memory: cross-entropy only vs cross-entropy + a contrastive
loss, side by side in one run, for a network given on the command line.

Each measurement runs in its own child process (so peak memory is that configuration's
alone); children alternate CE / contrast for ``--rounds`` rounds so machine noise hits
both. A step is the real ``training_step`` (forward, loss terms, backward, SGD update) on
a fixed batch of synthetic street scenes; the prediction BANE sees is the network's own.

Time: wall-clock per step, and the process's CPU time per step (``cpu_time_ratio``; all
threads, so steals by other tenants of a shared machine count less; on a GPU it measures
the host side only).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed steps. On the
CPU, where no allocator keeps such a count, one more step runs under the PyTorch profiler
with memory tracking and the peak of live tensor bytes is read off its allocation
timeline (``peak_alloc_mb``: every tensor the step touches or creates, parameters and
optimizer state included; the ratio is taken on it). The child's peak resident set size
(``ru_maxrss``) is reported beside it; it also counts allocator caching and
fragmentation, which made it vary by 5% between identical CE children on the dev machine.

    python benchmarks/contrast_overhead.py --model deeplabv3 --backbone resnet50 --output-stride 8
    python benchmarks/contrast_overhead.py --preset camvid          # the preset's network
    python benchmarks/contrast_overhead.py --preset camvid --paired 6   # time only, one process
    python benchmarks/contrast_overhead.py --preset camvid --method contextrast++ --baseline contextrast
    python benchmarks/contrast_overhead.py --preset camvid --method contextrast++ --baseline contextrast \
        --implementation plain --paired 2                                # the plain path's cost

``--baseline`` is what the method is compared with (cross-entropy alone by default; Contextrast
for Contextrast++'s own cost).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import add_network_args, conv_flops, machine, network_overrides, scene_batch  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.runtime.device import setup_runtime  # noqa: E402
from contextrast_cli.train.step import training_step  # noqa: E402
from contextrast_cli.models.registry import build_model  # noqa: E402


METHODS = ["none", "contextrast", "contextrast++", "pixel-contrast"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_network_args(parser)
    parser.add_argument("--method", default="contextrast", choices=METHODS[1:])
    parser.add_argument("--baseline", default="none", choices=METHODS[:3],
                        help="what the method is compared with (none: cross-entropy alone)")
    parser.add_argument("--implementation", default="fast", choices=["fast", "plain"],
                        help="contrast.implementation of --method (the baseline stays fast)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per child")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per child")
    parser.add_argument("--rounds", type=int, default=2, help="CE / contrast child pairs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="train.precision (auto: bf16 on GPUs that have it natively, fp16 on older ones, fp32 on the CPU)")
    parser.add_argument("--spread-classes", action="store_true",
                        help="rename each image's 8 scene classes to random ids of --num-classes (ADE20K-like batches)")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="time only: N CE / contrast step pairs interleaved in one process")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    return parser.parse_args()


def overrides(args: argparse.Namespace, method: str) -> list[str]:
    implementation = args.implementation if method == args.method else "fast"
    return [f"contrast.method={method}", f"train.device={args.device}", f"train.precision={args.precision}",
            f"contrast.implementation={implementation}"] + network_overrides(args)


def build(args: argparse.Namespace, method: str):
    """Config, runtime, network, heads (None for CE), optimizer, the fixed batch and the fp16 scaler."""
    cfg = resolve_config(args.preset, overrides=overrides(args, method))
    runtime = setup_runtime(cfg.train.device, cfg.train.precision, seed=0, fixed_shapes=True)
    model = build_model(cfg.model, args.num_classes).to(runtime.device).train()
    criterion = build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
    if criterion is not None:
        criterion.to(runtime.device).train()
    params = list(model.parameters()) + (list(criterion.parameters()) if criterion else [])
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    images, labels = (t.to(runtime.device) for t in scene_batch(
        args.batch, args.height, args.width, num_classes=args.num_classes if args.spread_classes else None))
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.grad_scaling else None  # fp16
    return cfg, runtime, model, criterion, optimizer, images, labels, scaler


def child(args: argparse.Namespace) -> dict:
    """Build one configuration, time its steps, report time and memory."""
    cfg, runtime, model, criterion, optimizer, images, labels, scaler = build(args, args.child)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    cuda = runtime.device.type == "cuda"
    base_rss = _rss_mb()
    times, cpu_times = [], []
    for index in range(args.warmup + args.steps):
        if index == args.warmup and cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start, cpu_start = time.perf_counter(), time.process_time()
        training_step(model, optimizer, images, labels, runtime.autocast, criterion, scaler=scaler)
        if cuda:
            torch.cuda.synchronize()
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    result = {"method": args.child, "step_s": statistics.median(times), "steps": times,
              "step_cpu_s": statistics.median(cpu_times),
              "peak_rss_mb": _rss_mb(), "base_rss_mb": base_rss,
              "peak_alloc_mb": None if cuda else _peak_alloc_mb(
                  lambda: training_step(model, optimizer, images, labels, runtime.autocast, criterion, scaler=scaler)),
              "params": sum(p.numel() for p in params), "machine": machine(runtime.device)}
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _peak_alloc_mb(step) -> float:
    """Peak live tensor bytes during ``step()`` on the CPU, from the profiler's allocation timeline."""
    from torch.profiler import profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:  # time-ordered, sizes in bytes
        if action in (Action.PREEXISTING, Action.CREATE):
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak / 2**20


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_child(args: argparse.Namespace, method: str) -> dict:
    command = [sys.executable, __file__, "--child", method] + [a for a in sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {method} child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def flop_shares(args: argparse.Namespace) -> dict:
    """Convolution FLOPs per image of the training network and of the projection heads.

    A step costs about 3x the forward FLOPs (backward ~2x); the heads add their forward, the
    replayed forward and their backward: 4x theirs. So ``4 * heads / (3 * network)`` is the
    share of step time the heads alone cost if every FLOP ran at the same rate.
    """
    cfg = resolve_config(args.preset, overrides=overrides(args, args.method))
    torch.manual_seed(0)
    model = build_model(cfg.model, args.num_classes).train()
    images, _ = scene_batch(2, args.height, args.width)  # 2: batch statistics need more than one value
    network = conv_flops(model, images) / 2
    with torch.no_grad():
        features = model(images)["features"]
    heads = build_criterion(cfg.contrast, model.feature_channels, model.num_classes).heads.train()
    projection = sum(conv_flops(heads[i], features[layer - 1])
                     for i, layer in enumerate(cfg.contrast.used_layers)) / 2
    return {"network_gflop": network / 1e9, "heads_gflop": projection / 1e9,
            "heads_over_network": projection / network, "heads_share_of_step": 4 * projection / (3 * network)}


def paired(args: argparse.Namespace) -> dict:
    """Step-time ratio from CE and contrast steps interleaved in one process.

    Both step kinds train the same network (the contrast steps also its heads), one right
    after the other, so a slowdown of the machine that lasts longer than a pair hits both:
    the median of the per-pair ratios resolves what ratios of separate children, minutes
    apart, cannot on a shared machine. No memory figure (one process holds both).
    """
    cfg, runtime, model, criterion, optimizer, images, labels, scaler = build(args, args.method)
    baseline = None
    if args.baseline != "none":  # a second loss on the same network, its parameters in the optimizer too
        base_cfg = resolve_config(args.preset, overrides=overrides(args, args.baseline))
        torch.manual_seed(0)
        baseline = build_criterion(base_cfg.contrast, model.feature_channels, model.num_classes)
        baseline.to(runtime.device).train()
        optimizer.add_param_group({"params": list(baseline.parameters())})

    cpu = {True: [], False: []}  # process CPU time per step (all threads): steals by other tenants count less

    def step(contrast: bool) -> float:
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        training_step(model, optimizer, images, labels, runtime.autocast, criterion if contrast else baseline,
                      scaler=scaler)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        cpu[contrast].append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step(False)
        step(True)
    pairs = []
    for index in range(args.paired):
        first = index % 2 == 1  # alternate which kind goes first
        a, b = step(first), step(not first)
        ce, ct = (b, a) if first else (a, b)
        pairs.append({"ce_s": ce, "contrast_s": ct, "ratio": ct / ce})
        print(f"pair {index + 1}: {args.baseline} {ce:.3f} s  {args.method} {ct:.3f} s  ratio {ct / ce:.3f}",
              file=sys.stderr)
    for pair, ce_cpu, ct_cpu in zip(pairs, cpu[False][-args.paired:], cpu[True][-args.paired:]):
        pair.update(ce_cpu_s=ce_cpu, contrast_cpu_s=ct_cpu, cpu_ratio=ct_cpu / ce_cpu)
    ratios = sorted(p["ratio"] for p in pairs)
    return {"network": cfg.model.model_dump(mode="json"), "method": args.method, "baseline": args.baseline,
            "implementation": args.implementation,
            "input": [args.batch, 3, args.height, args.width], "precision": runtime.precision, "machine": machine(runtime.device),
            "pairs": pairs, "median_time_ratio": statistics.median(ratios), "min_ratio": ratios[0],
            "median_cpu_ratio": statistics.median(p["cpu_ratio"] for p in pairs),
            "max_ratio": ratios[-1], "ce_step_s": statistics.median(p["ce_s"] for p in pairs),
            "contrast_step_s": statistics.median(p["contrast_s"] for p in pairs)}


def main() -> None:
    args = parse()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.paired:
        print(json.dumps({**paired(args), "conv_flops_per_image": flop_shares(args)}, indent=1))
        return
    results: dict[str, list[dict]] = {args.baseline: [], args.method: []}
    for round_index in range(args.rounds):
        order = (args.baseline, args.method) if round_index % 2 == 0 else (args.method, args.baseline)
        for method in order:
            results[method].append(run_child(args, method))
            r = results[method][-1]
            print(f"round {round_index + 1} {method:>14}: step {r['step_s']:.3f} s (CPU {r['step_cpu_s']:.1f} s)  peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB" + (f"  peak CUDA {r['peak_cuda_mb']:.0f} MB"
                                                 if "peak_cuda_mb" in r else
                                                 f"  peak tensors {r['peak_alloc_mb']:.0f} MB"), file=sys.stderr)
    print(json.dumps({**summary(args, results), "conv_flops_per_image": flop_shares(args)}, indent=1))


def summary(args: argparse.Namespace, results: dict[str, list[dict]]) -> dict:
    """Medians per configuration and contrast / CE ratios."""
    ce, ct = results[args.baseline], results[args.method]

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    out = {"network": resolve_config(args.preset, overrides=overrides(args, "none")).model.model_dump(mode="json"),
           "method": args.method, "baseline": args.baseline, "implementation": args.implementation,
           "input": [args.batch, 3, args.height, args.width], "precision": args.precision,
           "machine": ce[0]["machine"], "ce_step_s": med(ce, "step_s"), "contrast_step_s": med(ct, "step_s"),
           "time_ratio": med(ct, "step_s") / med(ce, "step_s"),
           "cpu_time_ratio": med(ct, "step_cpu_s") / med(ce, "step_cpu_s"),
           "params": {"ce": ce[0]["params"], "contrast": ct[0]["params"]}}
    if "peak_cuda_mb" in ce[0]:
        out.update(ce_peak_mb=med(ce, "peak_cuda_mb"), contrast_peak_mb=med(ct, "peak_cuda_mb"),
                   memory_ratio=med(ct, "peak_cuda_mb") / med(ce, "peak_cuda_mb"), memory="cuda allocated")
    else:
        step_ce = med(ce, "peak_rss_mb") - med(ce, "base_rss_mb")
        step_ct = med(ct, "peak_rss_mb") - med(ct, "base_rss_mb")
        out.update(ce_peak_mb=med(ce, "peak_alloc_mb"), contrast_peak_mb=med(ct, "peak_alloc_mb"),
                   memory_ratio=med(ct, "peak_alloc_mb") / med(ce, "peak_alloc_mb"),
                   memory="peak live tensor bytes (profiler allocation timeline)",
                   ce_peak_rss_mb=med(ce, "peak_rss_mb"), contrast_peak_rss_mb=med(ct, "peak_rss_mb"),
                   rss_ratio=med(ct, "peak_rss_mb") / med(ce, "peak_rss_mb"),
                   ce_step_rss_mb=step_ce, contrast_step_rss_mb=step_ct)
    return out


if __name__ == "__main__":
    main()
