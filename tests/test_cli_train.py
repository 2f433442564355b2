"""``contextrast train`` as a user types it (issue 37): scores in percent on screen and fractions in
the files, a note when the synthetic scenes are drawn, a finished run resumed says so, and the run
folder stores each checkpoint once (hard links), keeps resuming and pruning, and says its size."""

import json
import os
import re

import pytest
import torch

from contextrast_cli.train import runs
from tests.conftest import invoke, tiny_overrides


def sets(root, iterations=4, *extra):
    return [a for item in [*tiny_overrides(root, iterations), *extra] for a in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-iteration toy run through the CLI (validation and checkpoints at 2 and 4): (root, run folder, output)."""
    root = tmp_path_factory.mktemp("train")
    result = invoke("train", "--preset", "toy", *sets(root))
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "runs" / "toy").iterdir()
    return root, run_dir, result.output


def unique_bytes(folder) -> int:
    """The bytes a folder takes, each inode once (what `du` counts), written plainly."""
    sizes = {}
    for top, _, files in os.walk(folder):
        for name in files:
            stat = os.lstat(os.path.join(top, name))
            sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sum(sizes.values())


def test_scores_are_printed_in_percent_and_stored_as_fractions(trained):
    root, run_dir, output = trained
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "split" in r]
    assert [r["iteration"] for r in validations] == [2, 4] and all(r["units"] == "fraction" for r in validations)
    for record in validations:
        assert 0 <= record["mIoU"] <= 1
        assert f"iteration {record['iteration']}: val mIoU {record['mIoU'] * 100:.2f}  " \
               f"aAcc {record['aAcc'] * 100:.2f}" in output
    best = max(r["mIoU"] for r in validations)
    assert f"best val mIoU {best * 100:.2f};" in output
    assert json.loads((run_dir / "validation.json").read_text())["units"] == "fraction"
    assert not re.search(r"mIoU 0\.\d{4}", output)  # the old fraction on screen


def test_the_first_run_says_it_draws_the_synthetic_scenes_once(trained, tmp_path):
    root, _, output = trained
    assert output.count("note: drawing 8 + 4 synthetic scenes into") == 1 and str(root / "synthetic") in output
    again = invoke("train", "--preset", "toy", *sets(root, 1), "--runs-dir", tmp_path / "runs")
    assert again.exit_code == 0, again.output
    assert "synthetic scenes" not in again.output  # already there: nothing drawn, nothing said


def test_the_newest_interval_checkpoint_is_last_pt_itself_and_best_pt_has_no_optimizer(trained):
    _, run_dir, output = trained
    assert os.path.samefile(run_dir / "iter_000004.pt", run_dir / "last.pt")
    assert not os.path.samefile(run_dir / "iter_000002.pt", run_dir / "last.pt")
    best = torch.load(run_dir / "best.pt", weights_only=True, map_location="cpu")
    last = torch.load(run_dir / "last.pt", weights_only=True, map_location="cpu")
    assert "optimizer" not in best and "scheduler" not in best and "optimizer" in last
    # the end says the folder's size, each file counted once
    (shown,) = re.findall(rf"run folder {re.escape(str(run_dir))} \(([\d,]+) MB\)", " ".join(output.split()))
    assert int(shown.replace(",", "")) == round(unique_bytes(run_dir) / 1e6)
    assert unique_bytes(run_dir) < sum(p.stat().st_size for p in run_dir.iterdir()) - 0.9 * last_size(run_dir)


def last_size(run_dir) -> int:
    return (run_dir / "last.pt").stat().st_size


def test_a_linked_checkpoint_keeps_its_bytes_and_resumes_and_pruning_keeps_one(trained, tmp_path):
    """last.pt moves on by a rename: the iter_000004.pt linked to it still holds iteration 4 and a
    resume from it gives what the resume from last.pt gave; keep_checkpoints=1 prunes to the newest."""
    import shutil

    _, run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)  # plain copies: link them again, as the run left them
    os.unlink(copy / "iter_000004.pt")
    os.link(copy / "last.pt", copy / "iter_000004.pt")
    saved = (copy / "iter_000004.pt").read_bytes()
    assert invoke("train", "--resume", copy, "--iterations", 6).exit_code == 0
    assert (copy / "iter_000004.pt").read_bytes() == saved and not os.path.samefile(copy / "iter_000004.pt",
                                                                                   copy / "last.pt")
    assert os.path.samefile(copy / "iter_000006.pt", copy / "last.pt")
    first = torch.load(copy / "last.pt", weights_only=True)["model"]
    assert invoke("train", "--resume", copy / "iter_000004.pt", "--iterations", 6).exit_code == 0
    again = torch.load(copy / "last.pt", weights_only=True)
    assert again["iteration"] == 6 and all(torch.equal(first[k], again["model"][k]) for k in first)
    pruned = invoke("train", "--resume", copy, "--iterations", 8, "--set", "train.keep_checkpoints=1")
    assert pruned.exit_code == 0, pruned.output
    assert sorted(p.name for p in copy.glob("iter_*.pt")) == ["iter_000008.pt"]
    assert os.path.samefile(copy / "iter_000008.pt", copy / "last.pt")


def test_without_hard_links_the_interval_checkpoint_is_a_copy(trained, tmp_path, monkeypatch):
    root, _, _ = trained

    def refuse(*_):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    result = invoke("train", "--preset", "toy", *sets(root, 2), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs" / "toy").iterdir()
    assert not os.path.samefile(run_dir / "iter_000002.pt", run_dir / "last.pt")
    assert (run_dir / "iter_000002.pt").read_bytes() == (run_dir / "last.pt").read_bytes()


def test_resuming_a_finished_run_says_it_is_complete_and_how_to_train_longer(trained):
    _, run_dir, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.pt")}
    result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"already complete: {run_dir} has trained all its 4 iterations; nothing to do" in text
    assert f"contextrast train --resume {run_dir} --iterations N" in text
    assert "━" not in result.output and "done:" not in result.output  # no progress bar, no "done"
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.pt")} == before


def test_disk_usage_counts_a_linked_file_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"y" * 10)
    assert runs.disk_usage(tmp_path) == 1010
