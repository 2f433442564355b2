"""CPU inference latency: onnxruntime on the exported graph vs PyTorch eager, side by side.

The network (random init; latency does not depend on the weights) is saved as a real
checkpoint with projection heads, exported by ``export_checkpoint`` (dynamic axes, as
``contextrast export --onnx`` writes it) into a temporary folder, then both runtimes
time batch-1 forwards of one synthetic street scene, interleaved (torch, ort, ort,
torch, ...) so machine noise hits both, with the same thread count. Prints the medians
and the onnxruntime / PyTorch time ratio (< 1: onnxruntime is faster), and the logit
difference on the timed image (random-init networks without trained BatchNorm statistics
can have huge logits, hence also the relative difference).

    python benchmarks/onnx_latency.py                        # camvid preset: HRNetV2-W48
    python benchmarks/onnx_latency.py --preset camvid-lite --repeats 30
    python benchmarks/onnx_latency.py --profile              # also: where each runtime's time goes
    python benchmarks/onnx_latency.py --int8 --data-root data/camvid [--checkpoint runs/.../best.pt]

``--int8`` also quantizes the export as ``contextrast export --quantize int8`` does (calibrated
on ``--calibration-images`` of the dataset's train split), times the int8 graph in the same
interleaved rounds, and reports the gate's comparison on the validation split (float vs int8
mIoU, pixel agreement): meaningful with ``--checkpoint`` (a trained network); without it the
weights are random and only the latency means anything.

``--profile`` adds, from a few more forwards per runtime: time per operator type (the
onnxruntime profiler, the PyTorch profiler), the network's convolution FLOPs and the rate
each runtime's convolutions reach, beside a 2048^3 float32 matrix product's rate on the
same threads (the machine's practical peak).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import add_network_args, conv_flops, machine, network_overrides, scene_batch  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.config.datasets import DATASETS, default_palette  # noqa: E402
from contextrast_cli.models.checkpoint import describe, model_from_checkpoint, save_checkpoint  # noqa: E402
from contextrast_cli.evaluation.onnx import open_session  # noqa: E402
from contextrast_cli.export import ExportOptions, export_checkpoint  # noqa: E402
from contextrast_cli.models.registry import build_model  # noqa: E402


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_network_args(parser)
    parser.add_argument("--warmup", type=int, default=3, help="untimed forwards per runtime")
    parser.add_argument("--repeats", type=int, default=20, help="timed forwards per runtime")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads for both runtimes")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--profile", action="store_true", help="also report time per operator type")
    parser.add_argument("--int8", action="store_true", help="also quantize and time the int8 graph")
    parser.add_argument("--data-root", type=Path, help="prepared dataset for --int8 calibration and accuracy")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint instead of a random network")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--verify-images", type=int, help="validation images for the accuracy (default: all)")
    return parser.parse_args()


def write_checkpoint(cfg, path: Path) -> None:
    """A random-init checkpoint as ``contextrast train`` writes it (network + projection heads)."""
    spec = DATASETS[cfg.data.dataset]
    classes = spec.classes or tuple(f"class{i}" for i in range(spec.num_classes))
    dataset = argparse.Namespace(name=spec.name, classes=classes, ignore_index=255,
                                 palette=spec.palette or default_palette(len(classes)))
    torch.manual_seed(0)
    model = build_model(cfg.model, len(classes))
    criterion = build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
    save_checkpoint(path, {**describe(cfg, dataset), "model": model.state_dict(), "iteration": 0,
                           "contrast": criterion.heads.state_dict() if criterion is not None else None})


@torch.inference_mode()
def measure(args: argparse.Namespace, model: torch.nn.Module, graph: Path, int8: Path | None = None) -> dict:
    """Interleaved timings of PyTorch eager and onnxruntime (and the int8 graph) on one batch-1 scene."""
    session = open_session(graph, args.threads)
    image, _ = scene_batch(1, args.height, args.width)
    feed = {"image": image.numpy()}
    runs = {"torch": lambda: model(image)["out"], "onnxruntime": lambda: session.run(None, feed)[0]}
    if int8 is not None:
        quantized = open_session(int8, args.threads)
        runs["onnxruntime_int8"] = lambda: quantized.run(None, feed)[0]
    ref = runs["torch"]()
    diff = float((torch.from_numpy(runs["onnxruntime"]()) - ref).abs().max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for index in range(args.warmup + args.repeats):
        for name in (names if index % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            runs[name]()
            if index >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return {"times": times, "max_abs_logit_diff": diff, "max_abs_logit": float(ref.abs().max())}


@torch.inference_mode()
def profile_runtimes(args: argparse.Namespace, model: torch.nn.Module, graph: Path, runs: int = 3) -> dict:
    """Milliseconds per forward by operator type for both runtimes, and convolution GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile

    image, _ = scene_batch(1, args.height, args.width)
    flops = conv_flops(model, image)
    prefix = str(graph.parent / "ort-profile")
    session = open_session(graph, args.threads, profile_prefix=prefix)
    session.run(None, {"image": image.numpy()})  # warm-up, excluded below
    warm_events = len(json.loads(Path(session.end_profiling()).read_text()))
    session = open_session(graph, args.threads, profile_prefix=prefix)
    for _ in range(runs + 1):
        session.run(None, {"image": image.numpy()})
    events = json.loads(Path(session.end_profiling()).read_text())
    timed = len(events) - warm_events  # the events of the last ``runs`` runs: the first run's are dropped
    ort_ms: dict[str, float] = {}
    for event in events[-timed:]:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            ort_ms[op] = ort_ms.get(op, 0.0) + event["dur"] / 1000 / runs
    model(image)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            model(image)
    torch_ms = {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages()}
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    sgemm = 2 * 2048**3 * 5 / (time.perf_counter() - start)
    ort_conv = ort_ms.get("Conv", 0.0) + ort_ms.get("FusedConv", 0.0)
    torch_conv = sum(v for k, v in torch_ms.items() if "conv" in k)  # kernels and their wrappers' self time
    def top(table: dict[str, float]) -> dict[str, float]:
        return dict(sorted(((k, round(v, 1)) for k, v in table.items()), key=lambda kv: -kv[1])[:8])

    return {"conv_gflop": flops / 1e9, "sgemm_gflops": sgemm / 1e9,
            "onnxruntime": {"ms_by_op": top(ort_ms), "total_ms": sum(ort_ms.values()),
                            "conv_gflops": flops / 1e9 / (ort_conv / 1000) if ort_conv else None},
            "torch": {"ms_by_op": top(torch_ms), "total_ms": sum(torch_ms.values()),
                      "conv_gflops": flops / 1e9 / (torch_conv / 1000) if torch_conv else None}}


def main() -> None:
    args = parse()
    cfg = resolve_config(args.preset, overrides=network_overrides(args))
    with tempfile.TemporaryDirectory(prefix="onnx-latency-") as tmp:
        checkpoint = args.checkpoint or Path(tmp) / "best.pt"
        if args.checkpoint is None:
            write_checkpoint(cfg, checkpoint)
        start = time.perf_counter()
        result = export_checkpoint(checkpoint, Path(tmp) / "model.onnx", options=ExportOptions(
            opset=args.opset, height=args.height, width=args.width, verify=False))
        export_s = time.perf_counter() - start
        torch.set_num_threads(args.threads)
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        cfg = resolve_config(base=payload["config"]) if args.checkpoint else cfg
        model = model_from_checkpoint(payload)
        int8 = quantized(args, result.path) if args.int8 else None
        measured = measure(args, model, result.path, int8["path"] if int8 else None)
        profiled = profile_runtimes(args, model, result.path) if args.profile else None
    medians = {name: statistics.median(values) for name, values in measured["times"].items()}
    if int8:
        int8 = {k: v for k, v in int8.items() if k != "path"}
        int8["speedup_over_torch"] = medians["torch"] / medians["onnxruntime_int8"]
        int8["speedup_over_onnxruntime_float"] = medians["onnxruntime"] / medians["onnxruntime_int8"]
        int8["int8_ms"] = medians["onnxruntime_int8"] * 1000
        int8["checkpoint"] = str(args.checkpoint) if args.checkpoint else "random init"
    for name, value in medians.items():
        print(f"{name:>12}: median {value * 1000:.1f} ms over {args.repeats} runs", file=sys.stderr)
    print(json.dumps({
        "network": cfg.model.model_dump(mode="json"), "input": [1, 3, args.height, args.width],
        "threads": args.threads, "machine": machine(torch.device("cpu")), "export_s": round(export_s, 1),
        "parameters": {k: result.counts[k] for k in ("network", "projection", "training_total")},
        "torch_ms": medians["torch"] * 1000, "onnxruntime_ms": medians["onnxruntime"] * 1000,
        "ratio_onnxruntime_over_torch": medians["onnxruntime"] / medians["torch"],
        "max_abs_logit_diff": measured["max_abs_logit_diff"], "max_abs_logit": measured["max_abs_logit"],
        "relative_logit_diff": measured["max_abs_logit_diff"] / max(measured["max_abs_logit"], 1e-12),
        "runs_ms": {k: [round(v * 1000, 2) for v in values] for k, values in measured["times"].items()},
        **({"profile": profiled} if profiled else {}), **({"int8": int8} if int8 else {}),
    }, indent=1))


def quantized(args: argparse.Namespace, graph: Path) -> dict:
    """The export quantized as ``export --quantize int8`` does, with its float-vs-int8 comparison
    (the gate opened wide: a benchmark reports, it does not refuse)."""
    from contextrast_cli.export.quantize import QuantizeOptions, quantize_graph

    if args.data_root is None:
        sys.exit("--int8 needs --data-root: the prepared dataset to calibrate on")
    return quantize_graph(graph, QuantizeOptions(calibration_images=args.calibration_images,
                                                 verify_images=args.verify_images, max_miou_drop=100.0,
                                                 data_root=args.data_root))


if __name__ == "__main__":
    main()
