"""``prepare-data folder`` on the folders people really have: notebook checkpoints and other
hidden folders beside the images, images beside split sub-folders, an --ignore-index that is a
class id. Each mistake is one line, exit 2, nothing left in --out."""

import json
import shutil

import pytest

from tests.conftest import invoke, one_line_error
from tests.data import fixtures


def folder_args(src, out, *extra):
    return ("prepare-data", "folder", "--images", src / "images", "--labels", src / "labels",
            "--classes", src / "classes.txt", "--out", out, *extra)


def assert_nothing_written(out) -> None:
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_hidden_folders_and_pycache_beside_the_images_are_not_splits(tmp_path):
    src = fixtures.folder(tmp_path / "src")
    for junk in (".ipynb_checkpoints", ".git", "__pycache__"):
        (src / "images" / junk).mkdir()
        shutil.copy(src / "images" / "photo 0.png", src / "images" / junk / "photo 0-checkpoint.png")
    result = invoke(*folder_args(src, tmp_path / "out", "--val-fraction", 0.25))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["splits"] == {"train": 3, "val": 1}


def test_hidden_folders_beside_split_folders_are_not_splits(tmp_path):
    src = fixtures.folder(tmp_path / "src")
    for kind in ("images", "labels"):
        for split, stems in (("train", ("photo 0", "photo 1", "photo 2")), ("val", ("photo 3",))):
            (src / kind / split).mkdir()
            for stem in stems:
                (src / kind / f"{stem}.png").rename(src / kind / split / f"{stem}.png")
    (src / "images" / ".ipynb_checkpoints").mkdir()
    shutil.copy(src / "images" / "val" / "photo 3.png", src / "images" / ".ipynb_checkpoints" / "x.png")
    result = invoke(*folder_args(src, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["splits"] == {"train": 3, "val": 1}


def test_images_beside_split_folders_is_one_line(tmp_path):
    src = fixtures.folder(tmp_path / "src")
    (src / "images" / "val").mkdir()
    shutil.copy(src / "images" / "photo 3.png", src / "images" / "val" / "photo 3.png")
    result = invoke(*folder_args(src, tmp_path / "out"))
    one_line_error(result, 2, f"{src / 'images'} holds both images (4) and split sub-folders (val)")
    assert "either" in result.output and "or" in result.output
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("extra, text", [
    (("--ignore-index", 2), "--ignore-index 2 is the id of class 'road'"),
    (("--ignore-index", 0), "--ignore-index 0 is the id of class 'background'"),
    (("--ignore-index", 4, "--reduce-zero-label"), "--ignore-index 4 is how --reduce-zero-label stores class 'car'"),
    (("--ignore-index", 1, "--reduce-zero-label"), "--ignore-index 1 is how --reduce-zero-label stores class "
                                                   "'background'"),
])
def test_an_ignore_index_that_would_erase_a_class_is_one_line(extra, text, tmp_path):
    src = fixtures.folder(tmp_path / "src")
    one_line_error(invoke(*folder_args(src, tmp_path / "out", *extra)), 2, text)
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("extra", [("--ignore-index", 4), ("--ignore-index", 0, "--reduce-zero-label"),
                                   ("--ignore-index", 5, "--reduce-zero-label")])
def test_an_ignore_index_outside_the_class_ids_is_accepted(extra, tmp_path):
    src = fixtures.folder(tmp_path / "src")
    if "--reduce-zero-label" in extra:  # 0 = unlabelled, class k stored as k + 1
        for label in (src / "labels").iterdir():
            fixtures.write(label, fixtures.blocks(range(5), int(label.stem[-1])).astype("uint8"))
    result = invoke(*folder_args(src, tmp_path / "out", *extra))
    assert result.exit_code == 0, result.output
