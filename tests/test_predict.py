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
        assert "4 images (label" in text and "; 1 input failed" in text
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
    text = " ".join(result.output.split())
    assert count == 8 and "wrote 9 files to" in text and "1 video of 8 frames (an overlay video and 8 label frames)" \
        in text, text
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


def reference_labels(checkpoint, rgb: np.ndarray) -> np.ndarray:
    """The network's own argmax on one RGB image: a plain forward pass, no predict code."""
    import torch

    from contextrast_cli.models.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None])["out"]
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def read_rgb_plain(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_folders_are_searched_recursively_and_outputs_never_overwrite_each_other(toy, tmp_path):
    sources = sorted(toy.images.iterdir())
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copyfile(sources[0], root / "a" / "x.png")
    cv2.imwrite(str(root / "a" / "x.jpg"), cv2.imread(str(sources[1])))
    shutil.copyfile(sources[2], root / "b" / "x.png")
    out = root / "predictions"  # inside the folder searched: what is there is not taken as input
    (out / "labels").mkdir(parents=True)
    shutil.copyfile(sources[3], out / "labels" / "stale.png")
    result = invoke("predict", root, "--checkpoint", toy.checkpoint, "--device", "cpu", "--out", out, "--overlay")
    assert result.exit_code == 0, result.output
    assert "wrote 9 files to" in result.output and "3 images (label, colour and overlay PNGs each)" in \
        " ".join(result.output.split())
    expected = {"a/x.png.png": root / "a" / "x.png", "a/x.jpg.png": root / "a" / "x.jpg",
                "b/x.png": root / "b" / "x.png"}
    for sub in ("labels", "colour", "overlay"):
        found = {p.relative_to(out / sub).as_posix() for p in (out / sub).rglob("*") if p.is_file()}
        assert found == set(expected) | ({"stale.png"} if sub == "labels" else set())
    labels = {}
    for name, source in expected.items():
        labels[name] = cv2.imread(str(out / "labels" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels[name], reference_labels(toy.checkpoint, read_rgb_plain(source)))
    assert not np.array_equal(labels["a/x.png.png"], labels["b/x.png"])  # three images, three predictions


def test_outputs_that_would_collide_are_refused_before_anything_is_written(toy, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copyfile(sorted(toy.images.iterdir())[0], tmp_path / sub / "x.png")
    for inputs in ([tmp_path / "a", tmp_path / "b"], [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]):
        result = invoke("predict", *inputs, "--checkpoint", toy.checkpoint, "--out", tmp_path / "o")
        one_line_error(result, 2, "would both be written as labels/x.png")
        assert not (tmp_path / "o").exists()
    # two files given directly in one folder, one stem: the extension stays in the name
    cv2.imwrite(str(tmp_path / "a" / "x.jpg"), cv2.imread(str(tmp_path / "a" / "x.png")))
    result = invoke("predict", tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg", "--checkpoint", toy.checkpoint,
                    "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o" / "labels").iterdir()) == ["x.jpg.png", "x.png.png"]


@pytest.mark.parametrize("value, fps, noted", [
    (29.97, 29.97, False), (25, 25.0, False), (0, 25.0, True), (0.0, 25.0, True), (-1, 25.0, True),
    (float("nan"), 25.0, True), (float("inf"), 25.0, True), (None, 25.0, True),
])
def test_frame_rate_is_the_containers_when_finite_and_positive(value, fps, noted):
    from contextrast_cli.evaluation.predict import frame_rate

    got, note = frame_rate(value)
    assert got == fps and isinstance(got, float)
    assert (note is not None) == noted
    if noted:
        assert "25 fps" in note and "\n" not in note


def write_clip(path, frames, fps):
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (48, 32))
    assert video.isOpened()
    for frame in frames:
        video.write(frame)
    video.release()


@pytest.mark.parametrize("reported", [float("nan"), -1.0, 0.0, 12.0])
def test_video_with_an_unusable_frame_rate_is_written_at_25_fps_with_a_note(toy, tmp_path, monkeypatch, reported):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, [cv2.imread(str(p)) for p in sorted(toy.images.iterdir())], 12)
    real = cv2.VideoCapture

    class Reporting:  # a real capture whose container reports ``reported`` frames per second
        def __init__(self, *args):
            self.capture = real(*args)

        def get(self, prop):
            return reported if prop == cv2.CAP_PROP_FPS else self.capture.get(prop)

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", Reporting)
    result = invoke("predict", clip, "--checkpoint", toy.checkpoint, "--device", "cpu", "--out", tmp_path / "v")
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    written = real(str(tmp_path / "v" / "clip_overlay.mp4"))
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    if reported == 12.0:
        assert written.get(cv2.CAP_PROP_FPS) == 12.0 and not notes
    else:
        assert written.get(cv2.CAP_PROP_FPS) == 25.0
        assert len(notes) == 1 and str(clip) in notes[0] and "25 fps" in notes[0], result.output


def test_video_frames_in_batches_give_the_labels_of_one_at_a_time(toy, tmp_path, monkeypatch):
    from contextrast_cli.evaluation import inference, writers

    frames = [cv2.imread(str(p)) for p in sorted(toy.images.iterdir())]
    clip = tmp_path / "five.mp4"
    write_clip(clip, frames + frames[:1], 5)
    batches, drawn = [], []
    real_probs, real_colourize = inference.predict_probs, writers.colourize
    monkeypatch.setattr(inference, "predict_probs", lambda model, x, cfg=None: batches.append(len(x)) or
                        real_probs(model, x, cfg))
    monkeypatch.setattr(writers, "colourize", lambda pred, palette: drawn.append(pred.copy()) or
                        real_colourize(pred, palette))
    labels = {}
    for size in (1, 4):
        batches.clear()
        drawn.clear()
        result = invoke("predict", clip, "--checkpoint", toy.checkpoint, "--device", "cpu", "--batch-size", size,
                        "--out", tmp_path / str(size))
        assert result.exit_code == 0, result.output
        assert "1 video of 5 frames" in " ".join(result.output.split())
        assert batches == ([1] * 5 if size == 1 else [4, 1])
        labels[size] = np.stack(drawn)
    assert labels[1].shape == (5, 32, 48) and len(np.unique(labels[1])) >= 2
    np.testing.assert_array_equal(labels[1], labels[4])
    # each frame's train ids, as PNGs beside the overlay video: the labels the overlay was drawn from
    frames = sorted((tmp_path / "4" / "labels" / "five_frames").iterdir())
    assert [p.name for p in frames] == [f"{i:06d}.png" for i in range(5)]
    np.testing.assert_array_equal(np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in frames]), labels[4])


def test_video_without_label_frames_and_the_counts_in_the_singular(toy, tmp_path):
    frames = [cv2.imread(str(p)) for p in sorted(toy.images.iterdir())]
    write_clip(tmp_path / "one.mp4", frames[:1], 5)
    result = invoke("predict", tmp_path / "one.mp4", "--checkpoint", toy.checkpoint, "--device", "cpu",
                    "--no-label-frames", "-o", tmp_path / "p")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "wrote 1 file to" in text and "1 video of 1 frame (an overlay video)" in text, text
    assert not (tmp_path / "p" / "labels").exists()


def test_the_checkpoint_taken_by_default_is_named_with_where_it_comes_from(toy, tmp_path):
    import os

    from contextrast_cli.models.checkpoint import load_checkpoint, save_checkpoint

    runs = tmp_path / "runs"
    plain = runs / "toy" / "20260101-1200" / "best.pt"
    ablation = runs / "ablate" / "toy" / "none-seed1" / "best.pt"
    payload = load_checkpoint(toy.checkpoint)
    for path, iteration in ((plain, 3), (ablation, 7)):
        save_checkpoint(path, {**payload, "iteration": iteration})
    (runs / "ablate" / "toy" / "plan.json").write_text("{}")
    image = sorted(toy.images.iterdir())[0]
    for newest, older, iteration, kind in ((ablation, plain, 7, "an ablation run"),
                                           (plain, ablation, 3, "run toy/20260101-1200")):
        os.utime(older, (1_000_000, 1_000_000))
        os.utime(newest, (2_000_000, 2_000_000))
        result = invoke("predict", image, "--runs-dir", runs, "--device", "cpu", "--out", tmp_path / "o")
        assert result.exit_code == 0, result.output
        (line,) = [line for line in result.output.splitlines() if "no --checkpoint given" in line]
        assert line == (f"note: no --checkpoint given: using {newest}, the newest best.pt under {runs}/ "
                        f"({kind}, iteration {iteration}); pass --checkpoint to choose")


class Recording:
    """A segmenter that records the (H, W) of each input and passes it on."""

    def __init__(self, model) -> None:
        self.model, self.sizes = model, []

    def __call__(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.model(x)


def test_predict_runs_at_the_base_size_from_checkpoint_and_graph(toy):
    """With eval.base_size {long: 24, short: 16} a 32x48 image is seen at 16x24 (factor 0.5) by the
    checkpoint's network and by the ONNX graph; labels come back at 32x48, the same from both."""
    from contextrast_cli.evaluation.predict import load_predictor, predict_image

    rgb = cv2.cvtColor(cv2.imread(str(sorted(toy.images.iterdir())[0])), cv2.COLOR_BGR2RGB)
    base = {"base_size": {"long": 24, "short": 16}}
    labels = []
    for predictor in (load_predictor(toy.checkpoint, None, "cpu", eval_overrides=base),
                      load_predictor(None, toy.onnx, eval_overrides=base)):
        predictor.model = Recording(predictor.model)
        labels.append(predict_image(predictor, rgb))
        assert predictor.model.sizes == [(16, 24)] and labels[-1].shape == (32, 48)
    np.testing.assert_array_equal(*labels)
