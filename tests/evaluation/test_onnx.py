"""A static graph (one fixed export size) is evaluated on images resized to its size, with its
logits resized back so that the labels are scored at their own size; ``evaluate --onnx`` used to
refuse images of another size."""

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.export import ExportOptions, export_checkpoint
from tests.conftest import invoke, tiny_overrides
from tests.test_export import random_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A random network with calibrated BatchNorm (varied predictions) and its 32x48 val images."""
    root = tmp_path_factory.mktemp("static")
    cfg = resolve_config(preset="toy", overrides=tiny_overrides(root))
    dataset = locate_dataset(cfg.data)
    random_checkpoint(root / "best.pt", cfg, dataset)
    return root / "best.pt", dataset.root


def reference_confusion(graph, data, num_classes: int) -> np.ndarray:
    """onnxruntime on each image resized to 24x32 with OpenCV, the logits resized back to 32x48
    with OpenCV, counted against the labels at their own size with loops over classes."""
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    conf = np.zeros((num_classes, num_classes), np.int64)
    for path in sorted((data / "val" / "images").iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        small = cv2.resize(rgb, (32, 24), interpolation=cv2.INTER_LINEAR)
        logits = session.run(None, {"image": small.transpose(2, 0, 1)[None]})[0][0]  # (K, 24, 32)
        back = np.stack([cv2.resize(channel, (48, 32), interpolation=cv2.INTER_LINEAR) for channel in logits])
        pred = back.argmax(0)
        label = cv2.imread(str(data / "val" / "labels" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        for truth in range(num_classes):
            for guess in range(num_classes):
                conf[truth, guess] += int(((label == truth) & (pred == guess)).sum())
    return conf


def test_a_static_graph_is_scored_at_the_labels_native_size(toy, tmp_path):
    checkpoint, data = toy
    graph = export_checkpoint(checkpoint, tmp_path / "s.onnx", ExportOptions(height=24, width=32, dynamic=False,
                                                                             verify=False)).path
    result = invoke("evaluate", "--onnx", graph, "--data-root", data, "--json", tmp_path / "s.json", "--no-boundary")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "s.json").read_text())
    got = np.array(metrics["confusion"]["matrix"])
    want = reference_confusion(graph, data, len(got))
    assert got.sum(1).tolist() == want.sum(1).tolist()  # the labels at 32x48, every labelled pixel
    assert got.sum() == 4 * 32 * 48 - sum(int((cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == 255).sum())
                                          for p in (data / "val" / "labels").iterdir())
    assert np.abs(got - want).sum() <= 0.001 * want.sum()  # OpenCV and torch resize alike, up to near-ties
    assert (np.diag(want) > 0).sum() >= 3  # several classes predicted right: the comparison can fail


def test_a_static_argmax_graph_gives_labels_at_the_images_size(toy, tmp_path):
    checkpoint, data = toy
    graph = export_checkpoint(checkpoint, tmp_path / "a.onnx", ExportOptions(height=24, width=32, dynamic=False,
                                                                             argmax=True, verify=False)).path
    out = tmp_path / "preds"
    result = invoke("evaluate", "--onnx", graph, "--data-root", data, "--json", tmp_path / "a.json",
                    "--no-boundary", "--save-predictions", out)
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for path in sorted((data / "val" / "images").iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        small = cv2.resize(rgb, (32, 24), interpolation=cv2.INTER_LINEAR)
        labels = session.run(None, {"image": small.transpose(2, 0, 1)[None]})[0][0].astype(np.uint8)
        want = cv2.resize(labels, (48, 32), interpolation=cv2.INTER_NEAREST)
        got = cv2.imread(str(out / "labels" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == (32, 48) and (got == want).mean() >= 0.99
