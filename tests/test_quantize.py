"""``export --quantize int8``: the accuracy gate passes a well-calibrated graph and refuses a broken
calibration, and bad input is one line."""

import json
import shutil

import cv2
import numpy as np
import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.data.prepared import read_prepared
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step toy run on tiny synthetic scenes: (its best.pt, the prepared data folder)."""
    root = tmp_path_factory.mktemp("quantize")
    cfg = resolve_config("toy", overrides=tiny_overrides(root, 4))
    run_dir = Trainer(cfg).run().run_dir
    return run_dir / "best.pt", root / "synthetic"


def test_int8_passes_its_gate_and_records_both_graphs(trained, tmp_path):
    checkpoint, data = trained
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--quantize", "int8",
                    "--data-root", data, "--calibration-images", "8")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.int8.onnx").is_file()  # the float graph is kept
    meta = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    q = meta["quantization"]
    assert meta["onnx"] == "m.int8.onnx" and q["float_graph"] == "m.onnx" and q["calibration_images"] == 8
    assert q["images"] == 4 and q["miou_drop"] <= 1.0 and 0.9 <= q["pixel_agreement"] <= 1.0
    assert q["miou_drop"] == pytest.approx((q["float"]["mIoU"] - q["int8"]["mIoU"]) * 100, abs=1e-3)
    # the int8 graph is evaluated like any export, and scores what the gate measured
    evaluated = invoke("evaluate", "--onnx", tmp_path / "m.int8.onnx", "--data-root", data, "--json",
                       tmp_path / "e.json", "--no-boundary")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "e.json").read_text())["mIoU"] == pytest.approx(q["int8"]["mIoU"], abs=1e-6)


def test_a_constant_calibration_image_is_refused(trained, tmp_path):
    """A random network with calibrated BatchNorm: varied predictions (the 4-step run predicts one
    class everywhere, which no calibration can change)."""
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
