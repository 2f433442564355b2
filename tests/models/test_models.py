"""Registered segmentors: output sizes, taps, training-only features, weights loading."""

import pytest
import torch

from contextrast_cli.config import ModelConfig
from contextrast_cli.errors import ConfigError
from contextrast_cli.models.registry import MODELS, build_model

SMALL = [("deeplabv3", "resnet18", 8), ("deeplabv3", "resnet18", 16), ("deeplabv3plus", "resnet18", 16),
         ("deeplabv3plus", "resnet34", 32)]


@pytest.mark.parametrize("name,backbone,stride", SMALL)
def test_logits_at_input_size_and_taps(name, backbone, stride):
    model = build_model(ModelConfig(name=name, backbone=backbone, output_stride=stride), 5)
    x = torch.rand(2, 3, 61, 83)  # odd size
    out = model(x)
    assert out["out"].shape == (2, 5, 61, 83)
    features = out["features"]
    assert [f.shape[1] for f in features] == model.feature_channels
    for feature, s in zip(features, model.feature_strides):
        assert feature.shape[-2:] == (-(-61 // s), -(-83 // s))  # ceil division
    assert model.feature_strides[-1] == stride
    (out["out"].sum() + sum(f.mean() for f in features)).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    assert set(model(x)) == {"out"}  # no features at inference


def test_torchvision_resnet50_dilated():
    model = build_model(ModelConfig(backbone="resnet50", output_stride=8), 11).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 97, 129))
    assert out["out"].shape == (1, 11, 97, 129)
    assert model.feature_channels == [256, 512, 1024, 2048] and model.feature_strides == [4, 8, 8, 8]


def test_registry_misses_and_bad_options():
    assert {"deeplabv3", "deeplabv3plus"} <= set(MODELS)
    with pytest.raises(ConfigError, match="model.name: unknown model 'unet'; choose one of: deeplabv3"):
        build_model(ModelConfig(name="unet"), 3)
    with pytest.raises(ConfigError, match="model.backbone: unknown backbone 'vgg'"):
        build_model(ModelConfig(backbone="vgg"), 3)
    with pytest.raises(ConfigError, match="does not take dropout"):
        build_model(ModelConfig(backbone="resnet18", options={"dropout": 0.1}), 3)


def test_local_backbone_weights_are_loaded(tmp_path):
    source = build_model(ModelConfig(backbone="resnet18", output_stride=32), 3)
    torch.save(source.backbone.state_dict(), tmp_path / "backbone.pt")
    loaded = build_model(ModelConfig(backbone="resnet18", output_stride=32,
                                     weights=tmp_path / "backbone.pt"), 3)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(value, loaded.backbone.state_dict()[key]), key
    torch.save({"unrelated": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="no key of .* matches the backbone"):
        build_model(ModelConfig(backbone="resnet18", weights=tmp_path / "other.pt"), 3)
