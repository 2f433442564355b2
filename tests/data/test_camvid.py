"""The CamVid converter on a hand-built SegNet folder, and on the real data when present."""

import json

import cv2
import numpy as np
import pytest

from contextrast_cli.data.camvid import plan_camvid
from contextrast_cli.data.convert import convert
from contextrast_cli.data.prepared import list_pairs, read_prepared
from contextrast_cli.errors import DataError


def convert_camvid(source, out, **kwargs):
    return convert(plan_camvid(source), out, **kwargs)


def make_segnet(root, splits=("train", "val"), size=(6, 8)):
    """A tiny SegNet-layout folder: split k image i has label rows of values i..i+5 (11 = void)."""
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(2):
            image = np.full((*size, 3), 40 * i, np.uint8)
            label = np.repeat((np.arange(size[0]) + 6 * i)[:, None], size[1], 1).astype(np.uint8)
            cv2.imwrite(str(root / split / f"img{i}.png"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"img{i}.png"), label)
    return root


def test_converts_layout_void_and_statistics(tmp_path):
    source = make_segnet(tmp_path / "src")
    prepared = convert_camvid(source, tmp_path / "out")
    assert prepared.splits == {"train": 2, "val": 2}
    assert prepared.num_classes == 11 and prepared.classes[0] == "sky"
    label = cv2.imread(str(tmp_path / "out/train/labels/img1.png"), cv2.IMREAD_UNCHANGED)
    # image 1 has rows 6..11; row value 11 (void) becomes 255
    assert label[:, 0].tolist() == [6, 7, 8, 9, 10, 255]
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    # train pixels: image 0 rows 0..5, image 1 rows 6..10 (+ one void row): 11 known rows, 8 px each
    assert meta["class_frequencies"]["sky"] == pytest.approx(1 / 11, abs=1e-6)
    assert meta["ignored_fraction"] == pytest.approx(1 / 12, abs=1e-6)
    assert len(list_pairs(tmp_path / "out", "val")) == 2
    assert not list(tmp_path.glob(".out.tmp-*"))  # temporary folder is gone


def test_refuses_to_overwrite_without_force(tmp_path):
    source = make_segnet(tmp_path / "src")
    convert_camvid(source, tmp_path / "out")
    with pytest.raises(DataError, match="already exists.*--force"):
        convert_camvid(source, tmp_path / "out")
    assert convert_camvid(source, tmp_path / "out", force=True).splits["train"] == 2


def test_missing_label_is_reported(tmp_path):
    source = make_segnet(tmp_path / "src")
    (source / "valannot" / "img1.png").unlink()
    with pytest.raises(DataError, match="have no label.*img1.png"):
        convert_camvid(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_size_mismatch_and_unknown_values(tmp_path):
    source = make_segnet(tmp_path / "src")
    cv2.imwrite(str(source / "trainannot/img0.png"), np.zeros((5, 8), np.uint8))
    with pytest.raises(DataError, match="size 8x5 differs from its image"):
        convert_camvid(source, tmp_path / "out")
    cv2.imwrite(str(source / "trainannot/img0.png"), np.full((6, 8), 42, np.uint8))
    with pytest.raises(DataError, match=r"label value\(s\) 42 are not CamVid classes \(0-10, 11 = void\)"):
        convert_camvid(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_real_camvid(camvid_source, tmp_path):
    prepared = convert_camvid(camvid_source, tmp_path / "camvid")
    assert prepared.splits["train"] == 367 and prepared.splits["val"] == 101
    assert read_prepared(tmp_path / "camvid", "camvid").classes[-1] == "bicyclist"
    image_path, label_path = list_pairs(tmp_path / "camvid", "val")[0]
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    assert label.shape == (360, 480)
    assert set(np.unique(label).tolist()) <= set(range(11)) | {255}
    freq = json.loads((tmp_path / "camvid/dataset.json").read_text())["class_frequencies"]
    assert max(freq, key=freq.get) in ("road", "building", "sky")
