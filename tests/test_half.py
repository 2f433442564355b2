"""``export --half``: float16 weights for GPUs; refused on a machine that cannot verify it."""

import json

import onnx
import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.export.half import half_path
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="checks the CPU-only behaviour")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("half")
    cfg = resolve_config("toy", overrides=tiny_overrides(root))
    path = root / "best.pt"
    random_checkpoint(path, cfg, locate_dataset(cfg.data))
    return path


def test_half_without_a_cuda_provider_writes_nothing(checkpoint, tmp_path):
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--half")
    one_line_error(result, 2, "cannot be verified here")
    assert "--no-verify" in result.output and not list(tmp_path.iterdir())  # refused before exporting


def test_half_no_verify_writes_float16_weights_behind_float32_io(checkpoint, tmp_path):
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--half", "--no-verify")
    assert result.exit_code == 0, result.output
    path = half_path(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}  # the convolution weights
    assert kinds == {onnx.TensorProto.FLOAT16}
    meta = json.loads((tmp_path / "m.fp16.onnx.json").read_text())
    assert meta["half"]["verified"] is False and meta["onnx"] == "m.fp16.onnx"
    assert "not verified" in result.output
