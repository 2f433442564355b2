"""Nothing is lost, whatever stops a run: SIGKILL at three points, SIGINT and SIGTERM at any time
(mid-forward included), with 0 and 2 data workers; every resumed run ends bit-equal to an
uninterrupted one. Plus a corrupt last.pt, a full disk, and a diverging loss.

The runs are real ``contextrast train`` processes (``tests/train/driver.py`` holds them at
a chosen point); each takes a few seconds, most of it importing torch.
"""

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from contextrast_cli.models import checkpoint as checkpoint_module
from contextrast_cli.models.checkpoint import load_checkpoint
from tests.conftest import invoke, one_line_error, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 6


def train_args(tmp_path: Path, workers: int = 0, keep: int = 2) -> list[str]:
    """A 6-iteration toy run on tiny scenes, a checkpoint every step, validation every 3."""
    items = tiny_overrides(tmp_path, ITERATIONS) + [
        f"data.workers={workers}", "train.checkpoint_interval=1", "train.eval_interval=3",
        f"train.keep_checkpoints={keep}"]
    return ["train", "--preset", "toy", *[a for item in items for a in ("--set", item)]]


def wait_for_iteration(run_dir: Path, iteration: int, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until the run has logged ``iteration`` (metrics.jsonl has a line per step)."""
    deadline, log = time.monotonic() + timeout, run_dir / "metrics.jsonl"
    while not (log.is_file() and f'"iteration": {iteration}, "lr"' in log.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run ended or hung before iteration {iteration}:\n{process.stdout.read()}")
        time.sleep(0.02)


def start(markers: Path, hooks: list[str], args: list[str]) -> subprocess.Popen:
    markers.mkdir(parents=True, exist_ok=True)
    for stale in markers.iterdir():
        stale.unlink()
    command = [sys.executable, "-m", "tests.train.driver", str(markers), *hooks, "--", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: a signal reaches its workers too


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before {path.name}:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {path.name}")
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def run_dir_of(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs" / "toy").iterdir()
    return run_dir


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final network and contrastive loss (parameters, BatchNorm buffers and,
    under Contextrast++, the memory bank's queues)."""
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["iteration"] == ITERATIONS
    contrast = {}
    for key, value in payload["contrast"].items():
        nested = value.items() if isinstance(value, dict) else [("", value)]
        contrast.update({f"contrast.{key}.{name}".rstrip("."): tensor for name, tensor in nested})
    return {**{f"model.{k}": v for k, v in payload["model"].items()}, **contrast}


def assert_bit_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert different == [], different[:5]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The uninterrupted run's final tensors (0 workers; 2 workers must give the same)."""
    tmp_path = tmp_path_factory.mktemp("reference")
    code, output = finish(start(tmp_path / "markers", [], train_args(tmp_path)))
    assert code == 0, output
    return final_state(run_dir_of(tmp_path))


def test_sigkill_at_three_points_then_resume_is_bit_equal(reference, tmp_path):
    markers, args = tmp_path / "markers", train_args(tmp_path)
    # 1: mid-forward of iteration 2 (last.pt holds iteration 1)
    process = start(markers, ["stall_forward=2"], args)
    wait_for(markers / "stall_forward", process)
    process.kill()
    finish(process)
    run_dir = run_dir_of(tmp_path)
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 1
    # 2: while writing its second checkpoint (iteration 3): half the bytes are on disk
    process = start(markers, ["block_save=2"], ["train", "--resume", str(run_dir)])
    wait_for(markers / "block_save", process)
    process.kill()
    finish(process)
    assert list(run_dir.glob(".last.pt.*.tmp"))  # the killed write's temporary file ...
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 2  # ... never replaced last.pt
    # 3: during the validation at iteration 6 (its first batch was evaluation forward 3 of this process)
    process = start(markers, ["stall_eval=3"], ["train", "--resume", str(run_dir)])
    wait_for(markers / "stall_eval", process)
    process.kill()
    finish(process)
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 5
    code, output = finish(start(markers, [], ["train", "--resume", str(run_dir)]))
    assert code == 0, output
    assert not list(run_dir.glob(".*.tmp"))  # the stale temporary file was cleaned up on resume
    assert_bit_equal(final_state(run_dir), reference)
    assert sorted(p.name for p in run_dir.glob("iter_*.pt")) == ["iter_000005.pt", "iter_000006.pt"]


def test_contextrast_plus_plus_continues_its_memory_bank_after_sigkill(tmp_path):
    """Issue 34: the bank is training state. A ++ run killed mid-forward of iteration 4 and resumed
    ends bit-equal to the uninterrupted run, queues included."""
    plus = ["--set", "contrast.method=contextrast++"]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    code, output = finish(start(tmp_path / "markers", [], train_args(reference_dir) + plus))
    assert code == 0, output
    expected = final_state(run_dir_of(reference_dir))
    filled = expected["contrast.bank._extra_state.filled"]
    assert int(filled.max()) == ITERATIONS and expected["contrast.bank._extra_state.entries"].abs().sum() > 0
    process = start(tmp_path / "markers", ["stall_forward=4"], train_args(killed_dir) + plus)
    wait_for(tmp_path / "markers" / "stall_forward", process)
    process.kill()
    finish(process)
    run_dir = run_dir_of(killed_dir)
    assert int(load_checkpoint(run_dir / "last.pt")["contrast"]["bank._extra_state"]["filled"].max()) == 3
    code, output = finish(start(tmp_path / "markers", [], ["train", "--resume", str(run_dir)]))
    assert code == 0, output
    assert_bit_equal(final_state(run_dir), expected)


# each signal once and each worker count once (every pairing adds ~40 s of subprocesses to CI)
@pytest.mark.parametrize("signum,code,workers", [(signal.SIGINT, 130, 0), (signal.SIGTERM, 143, 2)],
                         ids=["SIGINT-0", "SIGTERM-2"])
def test_signal_at_any_time_then_resume_is_bit_equal(reference, tmp_path, workers, signum, code):
    markers, args = tmp_path / "markers", train_args(tmp_path, workers, keep=0)
    # mid-forward of iteration 3, to the whole process group (as a terminal's Ctrl-C or a scheduler does)
    process = start(markers, ["stall_forward=3"], args)
    wait_for(markers / "stall_forward", process)
    os.killpg(process.pid, signum)
    time.sleep(0.2)  # the handler runs while the step waits
    (markers / "go").write_text("go")
    returned, output = finish(process)
    assert returned == code, output
    assert "at iteration 3: stopped after the step in progress; last.pt saved" in output
    run_dir = run_dir_of(tmp_path)
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 3
    # then at a random moment of the resumed run, once it has trained a step
    process = start(markers, [], ["train", "--resume", str(run_dir)])
    wait_for_iteration(run_dir, 4, process)
    time.sleep(random.Random(signum * 10 + workers).uniform(0.0, 0.4))
    os.killpg(process.pid, signum)
    returned, output = finish(process)
    assert returned in (code, 0), output  # 0: the run had finished before the signal
    if returned == code:
        code_3, output = finish(start(markers, [], ["train", "--resume", str(run_dir)]))
        assert code_3 == 0, output
    assert_bit_equal(final_state(run_dir), reference)


def test_corrupt_last_pt_offers_the_newest_intact_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(*train_args(tmp_path)).exit_code == 0
    run_dir = run_dir_of(tmp_path)
    last = run_dir / "last.pt"
    # iter_000006.pt is last.pt under a second name (one copy on disk): damage done to last.pt in place
    # (contextrast itself only ever renames a finished file into place) reaches it too
    assert os.path.samefile(run_dir / "iter_000006.pt", last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # killed during a copy
    before = sorted((p.name, p.stat().st_size) for p in run_dir.iterdir())
    command = f"contextrast train --resume {run_dir / 'iter_000005.pt'}"
    result = invoke("train", "--resume", run_dir)
    one_line_error(result, 2, f"{last} is truncated or corrupt")
    assert "nothing was deleted; the newest intact checkpoint is iter_000005.pt (iteration 5); resume with: " \
           f"{command}" in " ".join(result.output.split())
    assert sorted((p.name, p.stat().st_size) for p in run_dir.iterdir()) == before
    resumed = invoke("train", "--resume", run_dir / "iter_000005.pt", "--iterations", 7)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(last)["iteration"] == 7


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save, writes = torch.save, []

    def full_disk(obj, path, *args, **kwargs):
        if Path(path).name.startswith(".last.pt."):
            writes.append(path)
            if len(writes) == 3:  # the third last.pt: half written when the disk fills up
                Path(path).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    result = invoke(*train_args(tmp_path))
    run_dir = run_dir_of(tmp_path)
    one_line_error(result, 2, f"could not write checkpoint {run_dir / 'last.pt'}: the disk is full; "
                              f"the previous last.pt is intact", after_progress=True)
    assert f"resume with: contextrast train --resume {run_dir}" in " ".join(result.output.split())
    assert not list(run_dir.glob(".*.tmp"))  # the partial file is gone
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 2


def test_diverged_names_iteration_terms_and_last_good_checkpoint(tmp_path, monkeypatch):
    from contextrast_cli.train import objective

    real, calls = objective.segmentation_losses, []

    def poisoned(outputs, target, group=None):
        calls.append(1)
        terms = real(outputs, target, group)
        return {k: v * float("nan") for k, v in terms.items()} if len(calls) == 3 else terms

    monkeypatch.setattr(objective, "segmentation_losses", poisoned)
    result = invoke("train", "--preset", "toy", *[a for s in tiny_overrides(tmp_path, 4) for a in ("--set", s)],
                    "--set", "train.log_interval=2")
    run_dir = run_dir_of(tmp_path)
    one_line_error(result, 3, "the loss became non-finite at iteration 3 (loss, loss_ce); nothing non-finite was saved",
                   after_progress=True)
    assert f"the last good checkpoint is {run_dir / 'last.pt'} (iteration 2)" in " ".join(result.output.split())
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["iteration"] == 2 and all(torch.isfinite(v).all() for v in payload["model"].values())
