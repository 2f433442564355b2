"""``contextrast train`` under torchrun with 2 gloo processes on the CPU: a SIGTERM that reaches
one process stops both after the same step with last.pt saved, and the run resumes on 2
processes and on 1, each seeing exactly the samples (and augmentations) the uninterrupted run saw.

The processes are real (``torchrun --standalone``), held by ``tests/train/driver.py``; every
training sample they load is recorded with its seed, which names its global position.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from contextrast_cli.data.loading import sample_seed
from contextrast_cli.models.checkpoint import load_checkpoint
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS, BATCH, SEED = 6, 4, 0


def train_args(tmp_path: Path) -> list[str]:
    items = tiny_overrides(tmp_path, ITERATIONS) + [
        f"train.batch_size={BATCH}", "train.eval_interval=100", "train.checkpoint_interval=100",
        "contrast.method=contextrast", f"train.seed={SEED}"]
    return ["train", "--preset", "toy", *[a for item in items for a in ("--set", item)]]


def launch(markers: Path, hooks: list[str], args: list[str], processes: int = 2) -> subprocess.Popen:
    markers.mkdir(parents=True, exist_ok=True)
    runner = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
              if processes > 1 else [sys.executable])  # torch.distributed.run is torchrun
    command = [*runner, "-m", "tests.train.driver", str(markers), "record=1", *hooks, "--", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    """The exit code and output of a run; the timeout only catches a hang (a busy shared machine
    can take minutes for a run that takes 20 s idle)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the run hung:\n{process.communicate()[0][-3000:]}") from None
    return process.returncode, output


def positions(markers: Path) -> Counter:
    """The global positions of the training samples the run's processes loaded (each position
    once per load), checked against the sample index each was loaded as."""
    by_seed = {sample_seed(SEED, p): p for p in range(ITERATIONS * BATCH + 16)}
    found = Counter()
    for path in markers.glob("samples.*"):
        for line in path.read_text().splitlines():
            index, seed = map(int, line.split())
            found[by_seed[seed]] += 1
    return found


def run_dir(root: Path) -> Path:
    (folder,) = (root / "runs" / "toy").iterdir()
    return folder


def test_sigterm_on_one_rank_stops_all_and_resumes_on_any_process_count(tmp_path):
    straight = tmp_path / "straight"
    code, output = finish(launch(straight / "markers", [], train_args(straight)))
    assert code == 0, output[-3000:]
    assert positions(straight / "markers") == Counter(range(ITERATIONS * BATCH))  # each sample once

    stopped = tmp_path / "stopped"
    process = launch(stopped / "markers", ["stall_forward=3"], train_args(stopped))
    ranks = [stopped / "markers" / f"stall_forward.{r}" for r in range(2)]
    deadline = time.monotonic() + 90
    while not all(path.exists() for path in ranks):  # both processes inside the forward of step 3
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.05)
    signal_rank = int(ranks[1].read_text())
    os.kill(signal_rank, signal.SIGTERM)  # rank 1 alone
    for r in range(2):
        (stopped / "markers" / f"go.{r}").write_text("")
    code, output = finish(process)
    assert code != 0 and "SIGTERM at iteration 4: stopped after the step in progress" in output, output[-3000:]
    folder = run_dir(stopped)
    saved = load_checkpoint(folder / "last.pt")
    assert saved["iteration"] == 4 and len(saved["rng_ranks"]) == 2  # agreed one step after the request
    before = positions(stopped / "markers")
    assert before == Counter(range(4 * BATCH))

    for processes in (2, 1):
        copy = tmp_path / f"resumed{processes}"
        shutil.copytree(stopped / "runs", copy / "runs")
        resume = ["train", "--resume", str(run_dir(copy))]
        code, output = finish(launch(copy / "markers", [], resume, processes))
        assert code == 0, output[-3000:]
        assert before + positions(copy / "markers") == positions(straight / "markers"), processes
        last = load_checkpoint(run_dir(copy) / "last.pt")
        assert last["iteration"] == ITERATIONS
        if processes == 2:  # same processes, same RNG states: the uninterrupted run's weights
            reference = load_checkpoint(run_dir(straight) / "last.pt")["model"]
            for key, value in last["model"].items():
                assert torch.allclose(value.double(), reference[key].double(), rtol=0, atol=1e-6), key
