"""Every converter on a fixture in its dataset's native layout: exact train ids after conversion
(every raw id checked against the dataset's published convention), splits and dataset.json; and
each kind of bad input as one line, exit 2, nothing left in --out."""

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import invoke, one_line_error
from tests.data import fixtures

# the conventions as the datasets publish them, written out here independently of the converters
CITYSCAPES_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
COCO_UNUSED_1_BASED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}  # COCO ids without annotations
COCO_NAMES_1_BASED = {1: "person", 2: "bicycle", 13: "stop sign", 92: "banner", 95: "bridge", 96: "building-other", 182: "wood"}
PASCAL_459_NAMES = {2: "aeroplane", 9: "bag", 284: "person", 324: "road", 360: "sky", 458: "wood"}


def tiled(values) -> np.ndarray:
    """Every value of ``values`` in a label of the fixtures' size (repeated to fill it)."""
    return np.resize(np.asarray(values), fixtures.SIZE)


def prepare(name: str, source, out, *extra) -> dict:
    result = invoke("prepare-data", name, "--source", source, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "dataset.json").read_text())


def label(out, split: str, stem: str) -> np.ndarray:
    return cv2.imread(str(out / split / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)


def check_mapping(raw: np.ndarray, got: np.ndarray, expected) -> None:
    """Each raw value became ``expected(raw value)``, pixel by pixel."""
    for value in np.unique(raw):
        assert set(np.unique(got[raw == value]).tolist()) == {expected(int(value))}, value


def test_cityscapes_official_train_ids_and_an_unlabelled_test_split(tmp_path):
    raw = tiled([*range(34), 255])
    source = fixtures.cityscapes(tmp_path / "src", lambda split, i: raw if (split, i) == ("train", 0) else
                                 fixtures.blocks([7, 26], i))
    meta = prepare("cityscapes", source, tmp_path / "out")
    check_mapping(raw, label(tmp_path / "out", "train", "aachen_000000_000019"),
                  lambda v: CITYSCAPES_TRAIN.get(v, 255))
    assert meta["splits"] == {"train": 2, "val": 1, "test": 1} and meta["unlabelled_splits"] == ["test"]
    assert not (tmp_path / "out" / "test" / "labels").exists()
    assert len(meta["classes"]) == 19 and meta["classes"][0] == "road" and meta["palette"][0] == [128, 64, 128]
    assert meta["classes"][18] == "bicycle" and meta["ignore_index"] == 255
    assert meta["source"]["converter"] == "cityscapes"
    assert sum(meta["class_frequencies"].values()) == pytest.approx(1, abs=1e-5)


def test_ade20k_zero_is_ignored_and_ids_shift_down(tmp_path):
    raw = tiled(range(151))
    source = fixtures.ade20k(tmp_path / "src", lambda split, i: raw)
    meta = prepare("ade20k", source, tmp_path / "out")
    check_mapping(raw, label(tmp_path / "out", "val", "ADE_valid_00000000"), lambda v: 255 if v == 0 else v - 1)
    assert meta["splits"] == {"train": 2, "val": 1} and len(meta["classes"]) == 150
    assert (meta["classes"][0], meta["classes"][149]) == ("wall", "flag") and len(meta["palette"]) == 150


def test_pascal_context_pngs_and_the_459_class_release(tmp_path):
    raw = tiled(range(60))
    source = fixtures.pascal_context(tmp_path / "png", lambda split, i: raw)
    meta = prepare("pascal-context", source, tmp_path / "a")
    check_mapping(raw, label(tmp_path / "a", "train", "2008_t00001"), lambda v: 255 if v == 0 else v - 1)
    assert meta["splits"] == {"train": 2, "val": 1}
    assert meta["classes"][:4] == ["aeroplane", "bag", "bed", "bedclothes"] and meta["classes"][-1] == "wood"
    # the original release: 459-class ids; the 59 keep their names, every other id is ignored
    raw = tiled([0, 1, 3, 100, 459, *PASCAL_459_NAMES])
    source = fixtures.pascal_context(tmp_path / "mat", lambda split, i: raw, mat=True)
    meta = prepare("pascal-context", source / "VOCdevkit", tmp_path / "b")
    got = label(tmp_path / "b", "val", "2008_v00000")
    check_mapping(raw, got, lambda v: meta["classes"].index(PASCAL_459_NAMES[v]) if v in PASCAL_459_NAMES else 255)
    assert meta["source"]["form"] == "459-class .mat release" and meta["splits"] == {"train": 2, "val": 1}


def coco_expected(classes, one_based: int) -> int:
    if one_based in COCO_NAMES_1_BASED:
        return classes.index(COCO_NAMES_1_BASED[one_based])
    used = [i for i in range(1, 183) if i not in COCO_UNUSED_1_BASED]  # in order: the 171 train ids
    return used.index(one_based)


def test_coco_stuff_164k_and_10k_map_to_the_same_171_classes(tmp_path):
    used = [i for i in range(1, 183) if i not in COCO_UNUSED_1_BASED]
    raw = tiled([255, *[i - 1 for i in used]])  # 164k: 0-based ids, 255 unlabelled
    meta = prepare("coco-stuff", fixtures.coco_stuff_164k(tmp_path / "big", lambda s, i: raw), tmp_path / "a")
    classes = meta["classes"]
    assert len(classes) == 171 and meta["source"]["variant"] == "164k"
    check_mapping(raw, label(tmp_path / "a", "train", f"{0:012d}"),
                  lambda v: 255 if v == 255 else coco_expected(classes, v + 1))
    raw = tiled([0, *used])  # 10k: 1-based ids, 0 unlabelled
    meta = prepare("coco-stuff", fixtures.coco_stuff_10k(tmp_path / "small", lambda s, i: raw), tmp_path / "b")
    assert meta["source"]["variant"] == "10k" and meta["splits"] == {"train": 2, "val": 1}
    check_mapping(raw, label(tmp_path / "b", "val", f"COCO_test2014_{0:012d}"),
                  lambda v: 255 if v == 0 else coco_expected(classes, v))
    assert sorted(set(range(171)) - set(np.unique(label(tmp_path / "b", "val", f"COCO_test2014_{0:012d}")))) == []


def test_folder_index_masks_with_names_with_spaces_and_a_seeded_split(tmp_path):
    source = fixtures.folder(tmp_path / "src")
    args = ("--images", source / "images", "--labels", source / "labels", "--classes", source / "classes.txt",
            "--val-fraction", 0.25, "--seed", 3)
    result = invoke("prepare-data", "folder", *args, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert meta["classes"] == ["background", "traffic light", "road", "car"]
    assert meta["palette"] == [[0, 0, 0], [250, 170, 30], [128, 64, 128], [0, 0, 142]]
    assert meta["splits"] == {"train": 3, "val": 1}
    val = sorted(p.stem for p in (tmp_path / "a" / "val" / "labels").iterdir())
    again = invoke("prepare-data", "folder", *args, "--out", tmp_path / "b")  # the same seed, the same split
    assert again.exit_code == 0 and sorted(p.stem for p in (tmp_path / "b" / "val" / "labels").iterdir()) == val
    stem = val[0]
    raw = cv2.imread(str(source / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(label(tmp_path / "a", "val", stem), raw)  # index masks: ids as they are
    # reduce-zero-label: 0 is unlabelled, k is class k-1
    reduced = invoke("prepare-data", "folder", *args, "--reduce-zero-label", "--out", tmp_path / "c")
    assert reduced.exit_code == 0, reduced.output
    check_mapping(raw, label(tmp_path / "c", "val", stem), lambda v: 255 if v == 0 else v - 1)


def test_folder_colour_masks_split_files_and_an_ignore_colour(tmp_path):
    source = fixtures.folder(tmp_path / "src", colour=True)
    bgr = cv2.imread(str(source / "labels" / "photo 1.png"))
    bgr[:4, :8] = (7, 7, 7)  # an unlabelled corner
    cv2.imwrite(str(source / "labels" / "photo 1.png"), bgr)
    (tmp_path / "train.txt").write_text("photo 0.png\nphoto 2\nphoto 3\n")
    (tmp_path / "val.txt").write_text("photo 1\n")
    result = invoke("prepare-data", "folder", "--images", source / "images", "--labels", source / "labels",
                    "--classes", source / "classes.txt", "--split-file", f"train={tmp_path / 'train.txt'}",
                    "--split-file", f"val={tmp_path / 'val.txt'}", "--ignore-color", "7,7,7", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    got = label(tmp_path / "o", "val", "photo 1")
    ids = fixtures.blocks(range(4), 1)
    assert (got[:4, :8] == 255).all() and np.array_equal(got[4:], ids[4:]) and np.array_equal(got[:4, 8:], ids[:4, 8:])
    assert json.loads((tmp_path / "o" / "dataset.json").read_text())["splits"] == {"train": 3, "val": 1}


def missing_subfolder(src):
    fixtures.ade20k(src)
    shutil.rmtree(src / "ADEChallengeData2016/annotations/validation")


def bad_ade_size(src):
    fixtures.ade20k(src)
    fixtures.write(src / "ADEChallengeData2016/annotations/training/ADE_train_00000001.png", np.zeros((10, 10), np.uint8))


def bad_split_file(src):
    fixtures.folder(src)
    (src / "val.txt").write_text("photo 1\nphoto 9\n")


BAD = {  # case -> (make the source, command arguments after the dataset name, expected text)
    "missing sub-folder": (missing_subfolder, "ade20k", "ADE20K source is incomplete: expected {src}/ADEChallengeData2016/annotations/validation"),
    "image without label": (lambda s: fixtures.cityscapes(s) and
                            (s / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png").unlink(),
                            "cityscapes", "1 image(s) in {src}/leftImg8bit/val have no label: "
                                          "aachen_000000_000019_leftImg8bit.png needs"),
    "label of another size": (bad_ade_size, "ade20k", "ADE_train_00000001.png: size 10x10 differs from its image"),
    "id outside the mapping": (lambda s: fixtures.coco_stuff_164k(s, lambda sp, i: fixtures.blocks([0, 11, 255], i)),
                               "coco-stuff", "000000000000.png: label value(s) 11 are not COCO-Stuff 164k ids"),
    "unknown colour": (lambda s: fixtures.folder(s, colour=True) and
                       fixtures.write(s / "labels/photo 2.png", np.full((*fixtures.SIZE, 3), 9, np.uint8)),
                       "folder", "photo 2.png: colour 9,9,9 is not a class colour of"),
    "empty classes file": (lambda s: fixtures.folder(s) and (s / "classes.txt").write_text("# nothing\n\n"),
                           "folder", "classes.txt: no class names"),
    "class named twice": (lambda s: fixtures.folder(s) and (s / "classes.txt").write_text("road\ncar\nroad\n"),
                          "folder", "classes.txt:3: class 'road' is named twice (first on line 1)"),
    "split file naming a missing image": (bad_split_file, "folder", "val.txt names 'photo 9', but its image"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_leaves_nothing(case, tmp_path):
    make, name, text = BAD[case]
    src, out = tmp_path / "src", tmp_path / "out"
    make(src)
    args = (["--images", src / "images", "--labels", src / "labels", "--classes", src / "classes.txt"]
            + (["--split-file", f"val={src / 'val.txt'}"] if (src / "val.txt").exists() else [])
            if name == "folder" else ["--source", src])
    one_line_error(invoke("prepare-data", name, *args, "--out", out), 2, text.format(src=src))
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_refuses_to_overwrite_without_force(tmp_path):
    source = fixtures.ade20k(tmp_path / "src")
    prepare("ade20k", source, tmp_path / "out")
    one_line_error(invoke("prepare-data", "ade20k", "--source", source, "--out", tmp_path / "out"), 2, "--force")
    prepare("ade20k", source, tmp_path / "out", "--force")
