"""``export --half``: float16 weights for GPUs, gated on real-data mIoU like int8 (``export.gate``);
refused on a machine that cannot verify it. The gate itself runs on two CPU graphs here."""

import json

import onnx
import pytest
import torch

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.errors import VerificationError
from contextrast_cli.evaluation.onnx import OnnxSegmentor, graph_dataset, read_sidecar
from contextrast_cli.export import half as half_module
from contextrast_cli.export.gate import GateOptions
from contextrast_cli.export.half import half_gate, half_path, verify_half
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint

CPU_ONLY = pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                              reason="checks the CPU-only behaviour")
SCORES = ("mIoU", "aAcc", "mAcc", "IoU", "Acc")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random network with calibrated BatchNorm (varied predictions) whose checkpoint evaluates
    at two scales with flips."""
    root = tmp_path_factory.mktemp("half")
    cfg = resolve_config("toy", overrides=tiny_overrides(root) + ["eval.scales=[0.75, 1.0]", "eval.flip=true"])
    path = root / "best.pt"
    random_checkpoint(path, cfg, locate_dataset(cfg.data))
    return path


@pytest.fixture(scope="module")
def graphs(checkpoint, tmp_path_factory):
    """(float graph, float16 graph written with --no-verify, data folder)."""
    folder = tmp_path_factory.mktemp("graphs")
    result = invoke("export", "--checkpoint", checkpoint, "--out", folder / "m.onnx", "--half", "--no-verify")
    assert result.exit_code == 0, result.output
    return folder / "m.onnx", half_path(folder / "m.onnx"), checkpoint.parent / "synthetic"


@CPU_ONLY
def test_half_without_a_cuda_provider_writes_nothing(checkpoint, tmp_path):
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--half")
    one_line_error(result, 2, "cannot be verified here")
    assert "--no-verify" in result.output and not list(tmp_path.iterdir())  # refused before exporting


def test_half_no_verify_writes_float16_weights_behind_float32_io(graphs):
    float_graph, path, _ = graphs
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}  # the convolution weights
    assert kinds == {onnx.TensorProto.FLOAT16}
    meta = json.loads((float_graph.parent / "m.fp16.onnx.json").read_text())
    assert meta["half"]["verified"] is False and meta["onnx"] == "m.fp16.onnx"


def test_the_half_gate_scores_both_graphs_as_evaluate_does(graphs, tmp_path):
    """The gate on two CPU graphs (float, float16): each graph's scores are ``evaluate --onnx``'s,
    number for number, under the checkpoint's protocol (two scales, flips), on the whole split."""
    float_graph, fp16_graph, data = graphs
    meta = read_sidecar(float_graph)
    report = verify_half(float_graph, fp16_graph, meta, GateOptions(data_root=data), ("CPUExecutionProvider",))
    assert (report["eval"]["scales"], report["eval"]["flip"], report["images"]) == ([0.75, 1.0], True, 4)
    for key, graph in (("float", float_graph), ("fp16", fp16_graph)):
        result = invoke("evaluate", "--onnx", graph, "--data-root", data, "--json", tmp_path / f"{key}.json")
        assert result.exit_code == 0, result.output
        scores = json.loads((tmp_path / f"{key}.json").read_text())
        assert {k: report[key][k] for k in SCORES} == {k: scores[k] for k in SCORES}, key
    assert sum(v is not None and v > 0 for v in report["float"]["IoU"].values()) >= 3  # several classes
    assert report["miou_drop"] == round((report["float"]["mIoU"] - report["fp16"]["mIoU"]) * 100, 4)
    assert report["pixel_agreement"] >= 0.99


def test_the_half_gate_refuses_a_graph_that_loses_accuracy(graphs):
    """A candidate runner that pushes every pixel to class 0 loses far more than 1 mIoU point."""
    float_graph, _, data = graphs
    meta = read_sidecar(float_graph)
    reference = OnnxSegmentor(float_graph, meta)

    def class_zero(images: torch.Tensor) -> dict:
        logits = reference(images)["out"].clone()
        logits[:, 0] += 1e3
        return {"out": logits}

    dataset = graph_dataset(float_graph, meta, data)
    with pytest.raises(VerificationError, match=r"fp16 loses .* more than --max-miou-drop 1\); nothing written"):
        half_gate(class_zero, reference, meta, dataset, GateOptions(data_root=data))
    report = half_gate(reference, reference, meta, dataset, GateOptions(data_root=data, max_miou_drop=0))
    assert report["miou_drop"] == 0 and report["pixel_agreement"] == 1.0


def test_export_half_gates_on_data_where_it_can_verify(checkpoint, tmp_path, monkeypatch):
    """``export --half`` with verification, its CUDA provider stood in for by the CPU: the sidecar
    records the gate's report on the --verify-images asked for."""
    monkeypatch.setattr(half_module, "require_cuda", lambda: None)
    monkeypatch.setattr(half_module, "CUDA", ("CPUExecutionProvider",))
    data = checkpoint.parent / "synthetic"
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--half",
                    "--verify-images", "2", "--data-root", data)
    assert result.exit_code == 0, result.output
    verification = json.loads((tmp_path / "m.fp16.onnx.json").read_text())["half"]["verification"]
    assert verification["images"] == 2 and verification["providers"] == ["CPUExecutionProvider"]
    assert verification["miou_drop"] <= 1.0 and "fp16" in verification
    assert "verified on CPU on 2 val images" in " ".join(result.output.split())
