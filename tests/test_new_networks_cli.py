"""The networks of issue 35 through the commands, like the existing ones: a short run, then
``predict``, ``visualize-boundaries`` and ``export --quantize int8`` (its accuracy gate) on its
checkpoint. (Swin exports at one fixed size: ``--static``.)"""

import json

import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.train.trainer import Trainer
from tests.conftest import invoke, tiny_overrides
from tests.models.small import SMALL_MODELS


@pytest.fixture(scope="module", params=["deeplabv3plus-mobilenetv2", "segformer", "upernet"])
def trained(request, tmp_path_factory):
    """A 20-step cross-entropy toy run of the network: (its best.pt, the data folder, one val image)."""
    root = tmp_path_factory.mktemp(request.param)
    base = resolve_config("toy", overrides=tiny_overrides(root, 20) + [
        "train.eval_interval=20", "train.checkpoint_interval=20", "contrast.method=none"]).to_dict()
    base["model"] = SMALL_MODELS[request.param].model_dump(mode="json")
    if request.param == "upernet":
        base["model"]["options"]["img_size"] = [32, 48]
    base["optim"] = {**base["optim"], "name": "adamw", "lr": 1e-3, "weight_decay": 0.01} if request.param != \
        "deeplabv3plus-mobilenetv2" else base["optim"]
    run_dir = Trainer(resolve_config(base=base)).run().run_dir
    data = root / "synthetic"
    image = sorted((data / "val" / "images").iterdir())[0]
    return request.param, run_dir / "best.pt", data, image


def test_predict_and_visualize_boundaries(trained, tmp_path):
    _, checkpoint, _, image = trained
    predicted = invoke("predict", image, "--checkpoint", checkpoint, "--device", "cpu", "-o", tmp_path / "p")
    assert predicted.exit_code == 0, predicted.output
    assert len(list((tmp_path / "p").rglob("*.png"))) >= 1
    shown = invoke("visualize-boundaries", image, "--checkpoint", checkpoint, "--out", tmp_path / "b", "--device", "cpu")
    assert shown.exit_code == 0, shown.output
    assert "BANE needs ground truth" not in shown.output
    assert (tmp_path / "b" / f"{image.stem}.png").is_file()


def test_int8_export_passes_its_gate(trained, tmp_path):
    name, checkpoint, data, _ = trained
    static = ["--static"] if name == "upernet" else []
    result = invoke("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx", "--quantize", "int8",
                    "--data-root", data, "--calibration-images", "8", *static)
    assert result.exit_code == 0, result.output
    q = json.loads((tmp_path / "m.int8.onnx.json").read_text())["quantization"]
    assert q["miou_drop"] <= 1.0 and q["pixel_agreement"] >= 0.9, q
