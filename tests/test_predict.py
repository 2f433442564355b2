"""``contextrast predict``: checkpoint and ONNX give the same label files, bad inputs are skipped and
counted, videos come out as overlay videos."""

import json
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.export import ExportOptions, export_checkpoint
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A random-init toy checkpoint, its exported graph, and a folder of 4 val images + 1 broken file."""
    root = tmp_path_factory.mktemp("predict")
    cfg = resolve_config(preset="toy", overrides=tiny_overrides(root))
    dataset = locate_dataset(cfg.data)
    checkpoint = root / "runs" / "toy" / "run" / "best.pt"
    random_checkpoint(checkpoint, cfg, dataset)
    onnx = export_checkpoint(checkpoint, root / "toy.onnx", ExportOptions(height=32, width=48)).path
    images = root / "images"
    shutil.copytree(dataset.root / "val" / "images", images)
    return SimpleNamespace(root=root, checkpoint=checkpoint, onnx=onnx, images=images, palette=dataset.palette)


def test_checkpoint_and_onnx_write_identical_labels_and_skip_a_corrupt_image(toy, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(toy.images, folder)
    (folder / "zz_broken.png").write_bytes(b"not a png")
    by_torch = invoke("predict", folder, "--checkpoint", toy.checkpoint, "--device", "cpu", "--out",
                      tmp_path / "t", "--overlay")
    by_onnx = invoke("predict", folder, "--onnx", toy.onnx, "--out", tmp_path / "o")
    for result in (by_torch, by_onnx):
        text = " ".join(result.output.split())
        assert result.exit_code == 1, result.output  # one input failed
        assert "for 4 images" in text and "1 input(s) failed" in text
        assert "zz_broken.png: cannot read image" in text
    names = sorted(p.name for p in toy.images.iterdir())
    for sub in ("labels", "colour"):
        assert sorted(p.name for p in (tmp_path / "t" / sub).iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "t" / "overlay").iterdir()) == names
    palette = np.array(toy.palette, np.uint8)
    for name in names:
        a = cv2.imread(str(tmp_path / "t" / "labels" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "o" / "labels" / name), cv2.IMREAD_UNCHANGED)
        assert a.dtype == np.uint8 and a.shape == (32, 48)
        np.testing.assert_array_equal(a, b)
        colour = cv2.cvtColor(cv2.imread(str(tmp_path / "t" / "colour" / name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(colour, palette[a])
    assert len(np.unique(a)) >= 2  # not a one-class prediction


def test_video_in_overlay_video_out(toy, tmp_path):
    frames = [cv2.imread(str(p)) for p in sorted(toy.images.iterdir())]
    clip = tmp_path / "clip.mp4"
    video = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (48, 32))
    for frame in frames + frames:
        video.write(frame)
    video.release()
    result = invoke("predict", clip, "--checkpoint", toy.checkpoint, "--device", "cpu", "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    capture, count = cv2.VideoCapture(str(tmp_path / "v" / "clip_overlay.mp4")), 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (32, 48, 3)
        count += 1
    assert count == 8 and "8 video frames" in " ".join(result.output.split())
    assert not list((tmp_path / "v").glob(".*.tmp*"))


def test_predict_bad_inputs_are_one_line(toy, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(invoke("predict", tmp_path / "empty", "--checkpoint", toy.checkpoint), 2, "no images or videos")
    one_line_error(invoke("predict", tmp_path / "nothing.png", "--checkpoint", toy.checkpoint), 2, "no such file")
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(toy.onnx, lonely)
    one_line_error(invoke("predict", toy.images, "--onnx", lonely), 2, "export it with `contextrast export --onnx`")
    sidecar = json.loads((toy.onnx.parent / f"{toy.onnx.name}.json").read_text())
    assert sidecar["dataset"]["palette"]  # what predict colours with
