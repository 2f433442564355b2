"""The README matches the tool: every command block of README.md runs, in order, in one temporary
folder, and a non-zero exit fails the test.

The rule, for whoever adds a block:

- Every fenced ```bash block runs, unless the line just before its opening fence (blank lines
  aside) is a marker ``<!-- readme-test: skip (WHY) -->``: mark blocks that need real data
  (``needs CamVid``), a GPU, several machines, the network (``pip install``), or hours.
- Each line of a block is one command (``\\`` continues a line; ``#`` starts a comment); every
  command of a block that runs must start with ``contextrast``. It runs in this process through
  Typer's CliRunner, as a user types it, in the folder the earlier blocks left behind.
- Shortened here, and only here: ``contextrast train --preset toy`` gets ``SHORTER`` appended
  (a few iterations on smaller crops instead of 600; the same scenes, so the later blocks find
  ``data/synthetic/``). Before the first block, ``write_fixtures`` writes the user's own files (``photos/``,
  ``masks/`` and ``classes.txt`` for the ``prepare-data folder`` block).
"""

import re
import shlex
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.data.fixtures import folder

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"^\s*<!--\s*readme-test:\s*skip\b.*-->\s*$")
SHORTER = ["--set", "train.iterations=4", "--set", "train.eval_interval=2", "--set", "train.checkpoint_interval=2",
           "--set", "train.batch_size=2", "--set", "data.crop_size=[48,64]", "--set", "train.log_interval=1",
           "--device", "cpu"]


def blocks(text: str) -> list[tuple[int, list[str], bool]]:
    """(line number, commands, skipped) of every ```bash block, in order."""
    found, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            before = next((line for line in reversed(lines[:index]) if line.strip()), "")
            end = next(j for j in range(index + 1, len(lines)) if lines[j].strip() == "```")
            found.append((index + 1, commands(lines[index + 1:end]), bool(SKIP.match(before))))
            index = end
        index += 1
    return found


def commands(body: list[str]) -> list[list[str]]:
    """The block's commands as argument lists (continuations joined, comments dropped)."""
    joined, current = [], ""
    for line in body:
        current += line.strip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current:
            joined.append(current)
        current = ""
    return [args for text in joined if (args := shlex.split(text, comments=True))]


def write_fixtures(root: Path) -> None:
    """What the blocks take as the user's own files."""
    folder(root / "own", count=10)
    shutil.move(root / "own" / "images", root / "photos")
    shutil.move(root / "own" / "labels", root / "masks")
    shutil.move(root / "own" / "classes.txt", root / "classes.txt")


def test_the_blocks_are_found_and_every_skip_says_why():
    found = blocks(README.read_text(encoding="utf-8"))
    assert len(found) >= 10 and any(not skipped for _, _, skipped in found)
    text = README.read_text(encoding="utf-8")
    for marker in re.findall(r"<!--\s*readme-test:[^>]*-->", text):
        assert re.fullmatch(r"<!-- readme-test: skip \([^)]+\) -->", marker), marker


def test_every_readme_block_that_runs_here_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_fixtures(tmp_path)
    ran = []
    for line, block, skipped in blocks(README.read_text(encoding="utf-8")):
        if skipped:
            continue
        for args in block:
            assert args[0] == "contextrast", f"README.md:{line}: {shlex.join(args)}: only contextrast commands run " \
                                             f"here; mark the block <!-- readme-test: skip (WHY) -->"
            extra = SHORTER if args[1:3] == ["train", "--preset"] and args[3] == "toy" else []
            start = time.perf_counter()
            result = invoke(*args[1:], *extra)
            assert result.exit_code == 0, f"README.md:{line}: {shlex.join(args)}\n{result.output}"
            ran.append(args[1])
            print(f"README.md:{line}: {time.perf_counter() - start:5.1f} s  {shlex.join(args)}")  # pytest -s
    assert {"train", "evaluate", "export", "predict", "visualize", "presets", "prepare-data"} <= set(ran), ran
