"""What ``contextrast analyze`` adds over a plain ``contextrast evaluate`` of the same checkpoint on
the same split, side by side in one run (interleaved: each round runs both, in alternating order,
so a shared machine's load hits both alike).

    python benchmarks/analyze_overhead.py --checkpoint RUN/last.pt --data-root data/camvid
                                          [--split val] [--images N] [--rounds 1] [--out /tmp/analyze-bench]

``evaluate`` is the command's library call (``evaluate_checkpoint``: the metrics with boundary IoU
and F-score, no report); ``analyze`` is the whole command (``experiments.analyze.analyze``: the same
evaluation with every analysis on its pass, t-SNE, Grad-CAM, the files and ``report.html`` with its
BANE views), with its default settings, into a fresh folder each round. The analysis's time is also
split into its parts (the evaluation pass with the analyses' meters, t-SNE, Grad-CAM, the files and
the page), timed by wrapping those functions. ``--images N`` times both on N images evenly spread over
the split (a copy of the prepared dataset holding only them: ``dataset.json`` keeps the training
split's class counts), for a machine too busy for the whole split.
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from contextrast_cli.evaluation.analyses import run as analyses_run  # noqa: E402
from contextrast_cli.evaluation import evaluator  # noqa: E402
from contextrast_cli.evaluation.evaluator import evaluate_checkpoint  # noqa: E402
from contextrast_cli.experiments import analysis_run  # noqa: E402
from contextrast_cli.experiments.analyze import AnalyzeSpec, analyze  # noqa: E402

PARTS = {"pass (evaluation + meters)": (evaluator, "evaluate_split"), "t-SNE": (analyses_run, "_tsne"),
         "Grad-CAM": (analyses_run, "_cams"), "files + page": (analysis_run, "write_run_files")}


@contextmanager
def timed_parts(seconds: dict[str, float]):
    """Wrap each of ``PARTS`` so that its wall time adds up in ``seconds``."""
    saved = {}
    for name, (module, attr) in PARTS.items():
        original = saved[name] = getattr(module, attr)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_name] = seconds.get(_name, 0.0) + time.perf_counter() - start

        setattr(module, attr, wrapper)
    try:
        yield
    finally:
        for name, (module, attr) in PARTS.items():
            setattr(module, attr, saved[name])


def subset(root: Path, split: str, images: int, folder: Path) -> Path:
    """A prepared dataset at ``folder`` with ``images`` of ``split`` evenly spread (links to the files)."""
    from contextrast_cli.data.prepared import DATASET_JSON, list_pairs
    from contextrast_cli.evaluation.evaluator import spread

    shutil.rmtree(folder, ignore_errors=True)
    pairs = list_pairs(root, split)
    for index in spread(len(pairs), images):
        for path, kind in zip(pairs[index], ("images", "labels")):
            (folder / split / kind).mkdir(parents=True, exist_ok=True)
            (folder / split / kind / path.name).symlink_to(path.resolve())
    meta = json.loads((root / DATASET_JSON).read_text())
    meta["splits"] = {split: images}
    (folder / DATASET_JSON).write_text(json.dumps(meta))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, help="only this many images of the split, evenly spread")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/analyze-bench"))
    args = parser.parse_args()
    if args.images:
        args.data_root = subset(args.data_root, args.split, args.images, args.out.with_name(args.out.name + "-data"))
    times: dict[str, list[float]] = {"evaluate": [], "analyze": []}
    parts: dict[str, float] = {}
    for round_ in range(args.rounds):
        order = ("evaluate", "analyze") if round_ % 2 == 0 else ("analyze", "evaluate")
        for what in order:
            shutil.rmtree(args.out, ignore_errors=True)
            start = time.perf_counter()
            if what == "evaluate":
                metrics = evaluate_checkpoint(args.checkpoint, split=args.split, data_root=args.data_root, device="cpu")
            else:
                with timed_parts(parts):
                    analyze(AnalyzeSpec(args.checkpoint, args.out, args.split, data_root=args.data_root,
                                        device="cpu", command="benchmarks/analyze_overhead.py"))
            times[what].append(time.perf_counter() - start)
            print(f"round {round_}: {what} {times[what][-1]:.1f} s", flush=True)
    evaluate_s, analyze_s = statistics.median(times["evaluate"]), statistics.median(times["analyze"])
    print(json.dumps({"machine": machine(torch.device("cpu")), "split": args.split,
                      "images": metrics["num_images"], "rounds": args.rounds, "evaluate_s": times["evaluate"],
                      "analyze_s": times["analyze"], "median_evaluate_s": round(evaluate_s, 1),
                      "median_analyze_s": round(analyze_s, 1), "added_s": round(analyze_s - evaluate_s, 1),
                      "ratio": round(analyze_s / evaluate_s, 2),
                      "analyze_parts_s (summed over rounds)": {k: round(v, 1) for k, v in parts.items()}}, indent=2))


if __name__ == "__main__":
    main()
