"""Wall time and val mIoU of the README's main job, `contextrast train --preset toy`.

Runs the preset exactly as a new user would (fresh data folder, fresh run folder)
in a temporary working directory and prints one JSON line.

    python benchmarks/toy_preset.py [--set key=value ...]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "contextrast_cli", "train", "--preset", "toy"]
        for item in args.overrides:
            command += ["--set", item]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        (metrics,) = Path(work, "runs", "toy").glob("*/metrics.jsonl")
        evals = [json.loads(line) for line in metrics.read_text().splitlines() if '"mIoU"' in line]
    print(json.dumps({"wall_s": round(wall, 1), "best_val_mIoU": max(e["mIoU"] for e in evals),
                      "final_val_mIoU": evals[-1]["mIoU"], "overrides": args.overrides,
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
