"""Wall time and val mIoU of the README's main job, `contextrast train --preset toy`.

Runs the preset exactly as a new user would (fresh data folder, fresh run folder)
in a temporary working directory and prints one JSON line.

    python benchmarks/toy_preset.py [--set key=value ...]

With ``--compare DIR`` (another checkout of contextrast, e.g. ``git worktree add /tmp/old
REV``) it alternates runs of that tree and of this one, ``--rounds`` times each, so the two
code versions are timed side by side on the same (noisy) machine; add ``--set
train.iterations=100 --set train.eval_interval=1000`` for a quick step-speed comparison. Each
line then also gives the training speed (median it/s of the logged windows after the first).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(source: Path, overrides: list[str]) -> dict:
    """One ``contextrast train --preset toy`` from the source tree ``source``, in a fresh folder."""
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "contextrast_cli", "train", "--preset", "toy"]
        for item in overrides:
            command += ["--set", item]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(source)})
        wall = time.perf_counter() - start
        (metrics,) = Path(work, "runs", "toy").glob("*/metrics.jsonl")
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
    evals = [r for r in records if "mIoU" in r]
    speeds = [r["it_per_s"] for r in records if "it_per_s" in r][1:]
    return {"source": str(source), "wall_s": round(wall, 1),
            "best_val_mIoU": max(e["mIoU"] for e in evals) if evals else None,
            "final_val_mIoU": evals[-1]["mIoU"] if evals else None,
            "it_per_s": round(statistics.median(speeds), 3) if speeds else None, "overrides": overrides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--compare", type=Path, help="another contextrast checkout, run alternately with this one")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    sources = [args.compare.resolve(), HERE] if args.compare else [HERE]
    for _ in range(args.rounds):
        for source in sources:
            print(json.dumps({**run(source, args.overrides), **machine}), flush=True)


if __name__ == "__main__":
    main()
