"""Disk a finished run folder takes: ``contextrast train`` in a fresh folder, then every file of the
run folder (size, hard-link count) and the folder's bytes with each file counted once (what ``du``
counts). One JSON line per run.

    python benchmarks/run_disk.py --preset toy --set train.iterations=20
    python benchmarks/run_disk.py --preset camvid --batch-size 2 --set train.iterations=4 \\
        --set data.dataset=synthetic --set data.crop_size=[120,160] \\
        --set "data.synthetic={num_train: 4, num_val: 2, size: [120, 160], seed: 0}"

With ``--compare DIR`` (another source tree of contextrast, e.g. ``git archive REV | tar -x -C
DIR``) the same run is made with that tree first, then with this one. A checkpoint's size is
the network's and the optimizer's, not the data's: the HRNetV2-W48 line trains on a few
synthetic scenes (8 classifier rows instead of CamVid's 11: 2,160 parameters) to stay short.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def unique_bytes(folder: Path) -> int:
    sizes = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.lstat()
            sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sum(sizes.values())


def run(source: Path, preset: str, extra: list[str]) -> dict:
    """One ``contextrast train --preset PRESET EXTRA...`` from ``source``, in a fresh folder."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as work:
        command = [sys.executable, "-m", "contextrast_cli", "train", "--preset", preset, *extra]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(source)})
        wall = time.perf_counter() - start
        (run_dir,) = Path(work, "runs", preset).iterdir()
        files = {p.name: [p.stat().st_size, p.stat().st_nlink] for p in sorted(run_dir.iterdir()) if p.is_file()}
        return {"source": str(source), "preset": preset, "args": extra, "wall_s": round(wall, 1),
                "run_folder_MB": round(unique_bytes(run_dir) / 1e6, 1),
                "files_MB_each_name": round(sum(size for size, _ in files.values()) / 1e6, 1),
                "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--compare", type=Path, help="another source tree, run first")
    args, extra = parser.parse_known_args()
    for source in ([args.compare] if args.compare else []) + [HERE]:
        print(json.dumps(run(source, args.preset, extra)), flush=True)


if __name__ == "__main__":
    main()
