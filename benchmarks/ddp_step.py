"""Data-parallel training on the CPU: what 2 gloo processes cost against 1 process at the same
global batch, side by side in one run.

A step is the trainer's own (``Objective`` in ``DistributedDataParallel``, ``training_step``:
forward, loss terms, backward with DDP's gradient all-reduce, SGD update) on a fixed batch of
synthetic scenes at the preset's crop. The single process takes the whole global batch with
every core's threads; each of the 2 processes takes half of it with half the threads. Inside the
2-process child, steps alternate with and without DDP's gradient synchronisation
(``no_sync``), so the all-reduce's own share is measured in the same process, one step apart.
Children alternate (1 process / 2 processes) for ``--rounds`` rounds.

    python benchmarks/ddp_step.py [--preset toy] [--batch 8] [--steps 6] [--rounds 2]

On a 2-core machine 2 processes cannot be faster than 1 (same cores, same work): this measures
the communication and the per-process overheads, not a speed-up.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, scene_batch  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402
from contextrast_cli.contrast.criterion import build_criterion  # noqa: E402
from contextrast_cli.runtime import collectives as ddp  # noqa: E402
from contextrast_cli.runtime.device import setup_runtime, shutdown_runtime  # noqa: E402
from contextrast_cli.train.objective import Objective
from contextrast_cli.train.step import training_step  # noqa: E402
from contextrast_cli.models.registry import build_model  # noqa: E402


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--method", default="contextrast", choices=["none", "contextrast", "pixel-contrast"])
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per child (per kind in the 2-process one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace) -> dict | None:
    """Time this process's steps; rank 0 returns the medians (other ranks None)."""
    runtime = setup_runtime("cpu", "fp32", seed=0, distributed=True)
    cfg = resolve_config(args.preset, overrides=[f"contrast.method={args.method}", "model.pretrained=false"])
    model = build_model(cfg.model, 11, cfg.data.mean, cfg.data.std).train()
    criterion = build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
    objective = Objective(model, criterion)
    wrapped = ddp.data_parallel(objective, runtime, unused_parameters=False)
    optimizer = torch.optim.SGD(objective.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    images, labels = scene_batch(args.batch, *cfg.data.crop_size)
    share = slice(runtime.rank, None, runtime.world_size)
    images, labels = images[share], labels[share]

    def step(sync: bool) -> float:
        ddp.barrier(runtime)  # every process starts together: a step ends when the slowest's does
        start = time.perf_counter()
        with contextlib.nullcontext() if sync or not runtime.distributed else wrapped.no_sync():
            training_step(model, optimizer, images, labels, contextlib.nullcontext, objective=wrapped)
        ddp.barrier(runtime)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step(True)
    synced, unsynced = [], []
    for index in range(args.steps):
        synced.append(step(True))
        if runtime.distributed:
            unsynced.append(step(False))
    shutdown_runtime(runtime)
    if not runtime.is_main:
        return None
    result = {"processes": runtime.world_size, "threads_per_process": torch.get_num_threads(),
              "images_per_process": len(images), "step_s": statistics.median(synced), "steps": synced}
    if unsynced:
        result["step_no_sync_s"] = statistics.median(unsynced)
    return result


def run_child(args: argparse.Namespace, processes: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    launcher = (["torchrun", "--standalone", f"--nproc-per-node={processes}"] if processes > 1
                else [sys.executable])
    done = subprocess.run([*launcher, __file__, "--child", *sys.argv[1:]], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"the {processes}-process child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse()
    if args.child:
        result = child(args)
        if result is not None:
            print(json.dumps(result))
        return
    rows: dict[int, list[dict]] = {1: [], args.processes: []}
    for round_index in range(args.rounds):
        order = (1, args.processes) if round_index % 2 == 0 else (args.processes, 1)
        for processes in order:
            rows[processes].append(run_child(args, processes))
            r = rows[processes][-1]
            print(f"round {round_index + 1}: {processes} process(es): step {r['step_s']:.3f} s"
                  + (f" (without the all-reduce {r['step_no_sync_s']:.3f} s)" if "step_no_sync_s" in r else ""),
                  file=sys.stderr)
    one = statistics.median(r["step_s"] for r in rows[1])
    many = statistics.median(r["step_s"] for r in rows[args.processes])
    no_sync = statistics.median(r["step_no_sync_s"] for r in rows[args.processes])
    print(json.dumps({"preset": args.preset, "method": args.method, "global_batch": args.batch,
                      "machine": machine(torch.device("cpu")), "one_process_step_s": one,
                      "multi_process_step_s": many, "multi_process_no_sync_step_s": no_sync,
                      "time_ratio": many / one, "allreduce_share": (many - no_sync) / many, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
