"""``export --quantize int8``: the accuracy gate scores what ``evaluate --onnx`` scores (the sidecar's
protocol, labels at their native size), passes a well-calibrated graph of a model that predicts
several classes, refuses a broken calibration, and bad input is one line."""

import json
import shutil

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.data.prepared import read_prepared
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint

SCORES = ("mIoU", "aAcc", "mAcc", "IoU", "Acc")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 20-step toy run on tiny synthetic scenes whose checkpoint evaluates by sliding windows
    (16x24 windows over the 32x48 images): (its best.pt, the prepared data folder)."""
    root = tmp_path_factory.mktemp("quantize")
    cfg = resolve_config("toy", overrides=tiny_overrides(root, 20) + [
        "train.eval_interval=20", "train.checkpoint_interval=20", "eval.mode=slide", "eval.crop=[16, 24]",
        "contrast.method=none"])  # the graph is what is quantized: cross-entropy trains it in half the time
    run_dir = Trainer(cfg).run().run_dir
    return run_dir / "best.pt", root / "synthetic"


def predicted_classes(graph, data) -> set[int]:
    """The classes a float graph predicts on the val images (onnxruntime, whole images)."""
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    found = set()
    for path in sorted((data / "val" / "images").iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        found |= set(np.unique(session.run(None, {"image": image})[0].argmax(1)).tolist())
    return found


def evaluated(graph, data, out) -> dict:
    result = invoke("evaluate", "--onnx", graph, "--data-root", data, "--json", out)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_int8_passes_its_gate_and_records_both_graphs(trained, tmp_path):
    """The gate's numbers are ``evaluate --onnx``'s, number for number, under the checkpoint's slide
    protocol (it used to measure whole images whatever the sidecar said)."""
    checkpoint, data = trained
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--quantize", "int8",
                    "--data-root", data, "--calibration-images", "8")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.int8.onnx").is_file()  # the float graph is kept
    assert len(predicted_classes(tmp_path / "m.onnx", data)) >= 3  # a gate that could fail
    meta = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    q = meta["quantization"]
    assert meta["onnx"] == "m.int8.onnx" and q["float_graph"] == "m.onnx" and q["calibration_images"] == 8
    assert q["images"] == 4 and q["miou_drop"] <= 1.0 and 0.9 <= q["pixel_agreement"] <= 1.0
    assert q["miou_drop"] == pytest.approx((q["float"]["mIoU"] - q["int8"]["mIoU"]) * 100, abs=1e-3)
    assert (q["eval"]["mode"], q["eval"]["crop"]) == ("slide", [16, 24])
    # printed side by side, in percent: mIoU, aAcc, mAcc, and IoU and accuracy per class (issue 37: only mIoU was)
    rows = {cells[0]: cells[1:] for line in result.output.splitlines()
            if (cells := [c.strip() for c in line.strip("│┃ ").split("│")]) and len(cells) >= 3}
    for key in ("mIoU", "aAcc", "mAcc"):
        assert rows[key][:2] == [f"{q['float'][key] * 100:.2f}", f"{q['int8'][key] * 100:.2f}"], (key, result.output)
    for name in q["float"]["IoU"]:
        assert rows[name] == [f"{q[g][k][name] * 100:.2f}" for k in ("IoU", "Acc") for g in ("float", "int8")], name
    # each graph evaluated like any export scores exactly what the gate measured
    for key, graph in (("float", "m.onnx"), ("int8", "m.int8.onnx")):
        scores = evaluated(tmp_path / graph, data, tmp_path / f"{key}.json")
        assert scores["eval"]["mode"] == "slide"
        assert {k: q[key][k] for k in SCORES} == {k: scores[k] for k in SCORES}, key


def test_a_static_graphs_gate_scores_labels_at_their_native_size(trained, tmp_path):
    """A static 24x32 graph on 32x48 images: the gate and ``evaluate --onnx`` (which used to refuse
    the graph) give the same numbers, over the labels at their own size."""
    checkpoint, data = trained
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "s.onnx", "--static", "--size",
                    "24x32", "--quantize", "int8", "--data-root", data, "--calibration-images", "8")
    assert result.exit_code == 0, result.output
    q = json.loads((tmp_path / "s.int8.onnx.json").read_text())["quantization"]
    for key, graph in (("float", "s.onnx"), ("int8", "s.int8.onnx")):
        scores = evaluated(tmp_path / graph, data, tmp_path / f"{key}.json")
        assert {k: q[key][k] for k in SCORES} == {k: scores[k] for k in SCORES}, key
        labels = sum(int((cv2.imread(str(p), cv2.IMREAD_UNCHANGED) != 255).sum())
                     for p in (data / "val" / "labels").iterdir())
        assert sum(map(sum, scores["confusion"]["matrix"])) == labels  # every label pixel, at 32x48


def test_a_constant_calibration_image_is_refused(trained, tmp_path):
    """A random network with calibrated BatchNorm: varied predictions, which a constant
    calibration image quantizes badly."""
    _, data = trained
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path))
    checkpoint = tmp_path / "random.pt"
    random_checkpoint(checkpoint, cfg, read_prepared(data))
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    images = sorted((broken / "train" / "images").iterdir())
    for path in images[1:]:
        path.unlink()
        (broken / "train" / "labels" / path.name).unlink()
    cv2.imwrite(str(images[0]), np.full((32, 48, 3), 128, np.uint8))
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--quantize", "int8",
                    "--data-root", broken, "--max-miou-drop", "0.5")
    one_line_error(result, 1, "nothing written", after_progress=True)
    assert "--exclude-nodes node_" in result.output and "more than --max-miou-drop 0.5" in result.output
    assert not (tmp_path / "m.int8.onnx").exists() and not (tmp_path / "m.int8.onnx.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    assert (tmp_path / "m.onnx").is_file()  # the float graph stays


def test_quantize_bad_input_is_one_line(trained, tmp_path):
    checkpoint, _ = trained
    one_line_error(invoke("export", "--checkpoint", checkpoint, "--quantize", "int8", "--calibration-images", "0"),
                   2, "--calibration-images 0")
    one_line_error(invoke("export", "--checkpoint", checkpoint, "--quantize", "int8", "--data-root",
                          tmp_path / "none"), 2, "prepare it with: contextrast prepare-data synthetic")
    one_line_error(invoke("export", "--checkpoint", checkpoint, "--quantize", "int4"), 2, "the only quantization")
