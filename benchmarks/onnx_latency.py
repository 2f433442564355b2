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

from benchmarks.common import add_network_args, machine, network_overrides, scene_batch  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.heads import build_projectors  # noqa: E402
from contextrast_cli.data.specs import DATASETS, default_palette  # noqa: E402
from contextrast_cli.engine.checkpoint import describe, model_from_checkpoint, save_checkpoint  # noqa: E402
from contextrast_cli.engine.onnx_eval import open_session  # noqa: E402
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
    return parser.parse_args()


def write_checkpoint(cfg, path: Path) -> None:
    """A random-init checkpoint as ``contextrast train`` writes it (network + projection heads)."""
    spec = DATASETS[cfg.data.dataset]
    classes = spec.classes or tuple(f"class{i}" for i in range(spec.num_classes))
    dataset = argparse.Namespace(name=spec.name, classes=classes, ignore_index=255,
                                 palette=spec.palette or default_palette(len(classes)))
    torch.manual_seed(0)
    model = build_model(cfg.model, len(classes))
    projectors = build_projectors(model.feature_channels, cfg.contrast) if cfg.contrast.method != "none" else None
    save_checkpoint(path, {**describe(cfg, dataset), "model": model.state_dict(), "iteration": 0,
                           "contrast": projectors.state_dict() if projectors is not None else None})


@torch.inference_mode()
def measure(args: argparse.Namespace, checkpoint: Path, graph: Path) -> dict:
    """Interleaved timings of PyTorch eager and onnxruntime on one batch-1 scene."""
    torch.set_num_threads(args.threads)
    model = model_from_checkpoint(torch.load(checkpoint, map_location="cpu", weights_only=True))
    session = open_session(graph, args.threads)
    image, _ = scene_batch(1, args.height, args.width)
    feed = {"image": image.numpy()}
    runs = {"torch": lambda: model(image)["out"], "onnxruntime": lambda: session.run(None, feed)[0]}
    ref = runs["torch"]()
    diff = float((torch.from_numpy(runs["onnxruntime"]()) - ref).abs().max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(args.warmup + args.repeats):
        for name in (("torch", "onnxruntime") if index % 2 == 0 else ("onnxruntime", "torch")):
            start = time.perf_counter()
            runs[name]()
            if index >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return {"times": times, "max_abs_logit_diff": diff, "max_abs_logit": float(ref.abs().max())}


def main() -> None:
    args = parse()
    cfg = resolve_config(args.preset, overrides=network_overrides(args))
    with tempfile.TemporaryDirectory(prefix="onnx-latency-") as tmp:
        checkpoint = Path(tmp) / "best.pt"
        write_checkpoint(cfg, checkpoint)
        start = time.perf_counter()
        result = export_checkpoint(checkpoint, options=ExportOptions(
            opset=args.opset, height=args.height, width=args.width, verify=False))
        export_s = time.perf_counter() - start
        measured = measure(args, checkpoint, result.path)
    medians = {name: statistics.median(values) for name, values in measured["times"].items()}
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
    }, indent=1))


if __name__ == "__main__":
    main()
