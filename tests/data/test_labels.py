"""Label files as annotation tools write them: palette (PASCAL VOC, labelme, CVAT), 8-bit grey and
16-bit PNGs of the same ids become the same train ids in every converter and in the prepared-label
reader; colour masks go through the folder converter's colour table and nowhere else."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from contextrast_cli.data.loading import read_label
from contextrast_cli.errors import DataError
from tests.conftest import invoke, one_line_error
from tests.data import fixtures

# PASCAL VOC's colour map for ids 0-3 and 255 (the void border): deliberately not the folder
# fixture's class colours, so a palette PNG read as colours cannot pass by accident
VOC_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 255: (224, 224, 192)}
CLASS_COLOURS = np.array([(0, 0, 0), (250, 170, 30), (128, 64, 128), (0, 0, 142)], np.uint8)  # classes.txt's


def save_label(path, ids: np.ndarray, mode: str):
    """``ids`` written as a ``mode`` PNG: ``P`` with VOC's palette, ``L``, ``I;16`` (16-bit grey), or
    ``RGB`` / ``RGBA`` colour-coded with the folder fixture's class colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        image = Image.fromarray(ids.astype(np.uint8), "P")
        palette = np.zeros((256, 3), np.uint8)
        for index, colour in VOC_COLOURS.items():
            palette[index] = colour
        image.putpalette(palette.ravel().tolist())
        image.save(path)
    elif mode == "L":
        Image.fromarray(ids.astype(np.uint8), "L").save(path)
    elif mode == "I;16":
        assert cv2.imwrite(str(path), ids.astype(np.uint16))
    else:
        rgb = CLASS_COLOURS[ids]
        if mode == "RGBA":
            rgb = np.dstack([rgb, np.full(ids.shape, 255, np.uint8)])
        Image.fromarray(rgb, mode).save(path)
    with Image.open(path) as written:
        assert written.mode == mode  # the file really is what the test claims
    return path


def prepared_label(out, split: str, stem: str) -> np.ndarray:
    return cv2.imread(str(out / split / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("mode", ["P", "L", "I;16", "RGB", "RGBA"])
def test_folder_reads_palette_grey_16_bit_and_colour_masks_alike(mode, tmp_path):
    source = fixtures.folder(tmp_path / "src")
    ids = {}
    for i in range(4):
        ids[f"photo {i}"] = fixtures.blocks(range(4), i)
        if i == 2:  # an unlabelled corner: 255 in an index mask, --ignore-color in a colour mask
            ids[f"photo {i}"][:4, :8] = 255
        labels = ids[f"photo {i}"] if mode[:3] != "RGB" else np.where(ids[f"photo {i}"] == 255, 0, ids[f"photo {i}"])
        path = save_label(source / "labels" / f"photo {i}.png", labels, mode)
        if mode[:3] == "RGB" and i == 2:
            rgb = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            rgb[:4, :8, :3] = 7
            assert cv2.imwrite(str(path), rgb)
    out = tmp_path / "out"
    result = invoke("prepare-data", "folder", "--images", source / "images", "--labels", source / "labels",
                    "--classes", source / "classes.txt", "--val-fraction", 0.25, "--ignore-color", "7,7,7",
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "dataset.json").read_text())["splits"] == {"train": 3, "val": 1}
    for stem, expected in ids.items():
        split = "train" if (out / "train" / "labels" / f"{stem}.png").is_file() else "val"
        assert np.array_equal(prepared_label(out, split, stem), expected), (mode, stem)


@pytest.mark.parametrize("mode", ["P", "L", "I;16"])
def test_ade20k_reads_palette_grey_and_16_bit_pngs_alike(mode, tmp_path):
    raw = np.resize(np.arange(0, 151, 7), fixtures.SIZE)
    source = fixtures.ade20k(tmp_path / "src")
    for path in (source / "ADEChallengeData2016" / "annotations").rglob("*.png"):
        save_label(path, raw, mode)
    result = invoke("prepare-data", "ade20k", "--source", source, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    expected = np.where(raw == 0, 255, raw - 1)  # ADE20K: 0 = other (ignored), k -> k - 1
    assert np.array_equal(prepared_label(tmp_path / "out", "val", "ADE_valid_00000000"), expected)


@pytest.mark.parametrize("mode", ["P", "I;16"])
def test_camvid_reads_palette_and_16_bit_pngs(mode, tmp_path):
    raw = np.resize(np.arange(12), fixtures.SIZE)
    source = fixtures.camvid(tmp_path / "src")
    for path in source.glob("*annot/*.png"):
        save_label(path, raw, mode)
    result = invoke("prepare-data", "camvid", "--source", source, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    expected = np.where(raw == 11, 255, raw)  # CamVid: 11 = void
    assert np.array_equal(prepared_label(tmp_path / "out", "train", "0001TP_000001"), expected)


PALETTE_CASES = {  # dataset -> (fixture, raw ids, raw -> train id as the dataset publishes it, where a label lands)
    "cityscapes": (fixtures.cityscapes, [0, 7, 8, 26, 33, 255], {7: 0, 8: 1, 26: 13, 33: 18}.get,
                   ("train", "aachen_000000_000019")),
    "pascal-context": (fixtures.pascal_context, [0, 1, 2, 59], lambda v: v - 1 if v else None, ("train", "2008_t00000")),
    "coco-stuff": (fixtures.coco_stuff_164k, [255, 0, 1, 2], lambda v: None if v == 255 else v, ("train", f"{0:012d}")),
}


@pytest.mark.parametrize("dataset", sorted(PALETTE_CASES))
def test_every_other_converter_reads_palette_pngs(dataset, tmp_path):
    make, values, train_id, (split, stem) = PALETTE_CASES[dataset]
    raw = np.resize(np.asarray(values), fixtures.SIZE)
    source = make(tmp_path / "src", lambda s, i: raw)
    labels = [p for p in source.rglob("*.png") if "leftImg8bit" not in p.parts]
    for path in labels:
        save_label(path, raw, "P")
    result = invoke("prepare-data", dataset, "--source", source, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    expected = np.vectorize(lambda v: 255 if train_id(int(v)) is None else train_id(int(v)))(raw)
    assert np.array_equal(prepared_label(tmp_path / "out", split, stem), expected)


def test_a_colour_mask_is_refused_outside_the_folder_converter(tmp_path):
    source = fixtures.ade20k(tmp_path / "src")
    bad = source / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    save_label(bad, fixtures.blocks(range(4), 1), "RGB")
    one_line_error(invoke("prepare-data", "ade20k", "--source", source, "--out", tmp_path / "out"), 2,
                   f"{bad}: an RGB colour image")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["P", "L", "I;16"])
def test_read_label_takes_the_ids_of_palette_grey_and_16_bit_pngs(mode, tmp_path):
    ids = fixtures.blocks([0, 1, 2, 3, 255], 5)
    label = read_label(save_label(tmp_path / "label.png", ids, mode))
    assert label.dtype == np.uint8 and np.array_equal(label, ids)


@pytest.mark.parametrize("case, text", [
    ("RGB", "an RGB colour image"),
    ("16-bit above 255", "values up to 300"),
    ("grey with alpha", "mode LA"),
    ("not an image", "not an image"),
    ("missing", "no such file"),
])
def test_read_label_refuses_what_is_not_a_map_of_train_ids(case, text, tmp_path):
    path = tmp_path / "label.png"
    if case == "RGB":
        save_label(path, fixtures.blocks(range(4), 1), "RGB")
    elif case == "16-bit above 255":
        save_label(path, np.array([[0, 300], [2, 3]]), "I;16")
    elif case == "grey with alpha":
        Image.fromarray(np.zeros((4, 4, 2), np.uint8), "LA").save(path)
    elif case == "not an image":
        path.write_text("not a png")
    with pytest.raises(DataError) as info:
        read_label(path)
    message = str(info.value)
    assert str(path) in message and text in message and "\n" not in message
