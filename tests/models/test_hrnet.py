"""HRNetV2 and OCRNet, and every registered network through its small configuration."""

import json

import pytest
import timm.models._builder
import torch
import torch.nn.functional as F
from huggingface_hub.errors import LocalEntryNotFoundError

from contextrast_cli.config import ModelConfig, resolve_config
from contextrast_cli.models.checkpoint import load_checkpoint, model_from_checkpoint
from contextrast_cli.train.objective import segmentation_losses
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.errors import ConfigError
from contextrast_cli.models.registry import MODELS, build_model
from tests.conftest import tiny_overrides
from tests.models.small import SMALL_MODELS

CAMVID_SIZES = [(360, 480), (353, 479)]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def test_every_registered_network_has_a_small_config():
    assert {cfg.name for cfg in SMALL_MODELS.values()} == set(MODELS)
    assert all(key.split("-")[0] == cfg.name for key, cfg in SMALL_MODELS.items())


@pytest.mark.parametrize("size", CAMVID_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_logits_at_input_size_taps_and_eval_outputs(name, size):
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS[name], 11)
    x = torch.rand(2, 3, *size)  # batch 2: ASPP's image pooling needs it in training mode
    with torch.no_grad():
        out = model(x)
        assert out["out"].shape == (2, 11, *size)
        assert [f.shape[1] for f in out["features"]] == model.feature_channels
        for feature, s in zip(out["features"], model.feature_strides):
            assert feature.shape[-2:] == (ceil_div(size[0], s), ceil_div(size[1], s))
        if "aux" in out:
            assert out["aux"].shape == (2, 11, *size)
        model.eval()
        evaluated = model(x)
    assert set(evaluated) == {"out"} and evaluated["out"].shape == (2, 11, *size)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_inference_uses_every_parameter(name):
    """``training_only_modules()`` says no registered network has training-only parts (the
    exporter keeps everything): then the eval-mode logits depend on every parameter (OCRNet's
    auxiliary head included: its soft regions feed the OCR block)."""
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS[name], 5).eval()
    model(torch.rand(1, 3, 64, 96))["out"].square().mean().backward()
    unused = [k for k, p in model.named_parameters() if p.grad is None]  # not in the inference graph
    assert model.training_only_modules() == [] and unused == []


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_backward_reaches_every_parameter(name):
    model = build_model(SMALL_MODELS[name], 5)
    out = model(torch.rand(2, 3, 61, 83))  # odd size
    loss = out["out"].mean() + sum(f.mean() for f in out["features"]) + out.get("aux", torch.zeros(1)).mean()
    loss.backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_hrnet_padding_is_cropped_back_exactly():
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS["hrnet"], 4)
    x = torch.rand(2, 3, 61, 83)
    # what the model pads to internally: zeros after its normalisation, i.e. the mean before it
    mean = model.pixel_mean
    padded = F.pad(x - mean, (0, 96 - 83, 0, 64 - 61)) + mean
    with torch.no_grad():
        out, reference = model(x), model(padded)
    torch.testing.assert_close(out["out"], reference["out"][..., :61, :83])
    assert model.feature_strides == [4, 8, 16, 32]
    for feature, full, s in zip(out["features"], reference["features"], model.feature_strides):
        torch.testing.assert_close(feature, full[..., :ceil_div(61, s), :ceil_div(83, s)])


def test_hrnet_has_fixed_strides_and_backbones_are_hrnets():
    model = build_model(ModelConfig(name="hrnet", backbone="hrnet_w18_small_v2"), 3)
    assert model.feature_strides == [4, 8, 16, 32] and model.feature_channels == [18, 36, 72, 144]
    for name in ("hrnet", "ocrnet"):  # an output stride is refused, not silently ignored
        with pytest.raises(ConfigError, match=f"model.output_stride: {name} has fixed strides"):
            build_model(ModelConfig(name=name, backbone="hrnet_w18_small_v2", output_stride=8), 3)
    with pytest.raises(ConfigError, match="unknown HRNet backbone 'resnet18'; choose one of: hrnet_w18_small_v2"):
        build_model(ModelConfig(name="hrnet", backbone="resnet18"), 3)


def test_ocrnet_aux_loss_is_weighted_cross_entropy():
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS["ocrnet"], 4)
    target = torch.randint(0, 4, (2, 64, 96))
    target[:, :8] = 255  # ignored rows
    out = model(torch.rand(2, 3, 64, 96))
    assert out["aux_weight"] == 0.4
    terms = segmentation_losses(out, target)
    assert set(terms) == {"loss_ce", "loss_aux"}
    expected = 0.4 * F.cross_entropy(out["aux"], target, ignore_index=255)
    torch.testing.assert_close(terms["loss_aux"], expected)
    torch.testing.assert_close(terms["loss_ce"], F.cross_entropy(out["out"], target, ignore_index=255))
    options = {**SMALL_MODELS["ocrnet"].options, "aux_weight": 0.25}
    other = build_model(SMALL_MODELS["ocrnet"].model_copy(update={"options": options}), 4)
    assert other(torch.rand(2, 3, 32, 32))["aux_weight"] == 0.25
    assert set(segmentation_losses(build_model(SMALL_MODELS["hrnet"], 4)(torch.rand(1, 3, 64, 96)), target[:1])) \
        == {"loss_ce"}


def test_ocrnet_inference_uses_the_aux_head():
    """The soft object regions come from the aux head, so it is not training-only."""
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS["ocrnet"], 4).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)["out"]
        model.head.aux_head.classifier.weight.mul_(3.0)
        after = model(x)["out"]
    assert not torch.allclose(before, after)


def test_hrnet_w48_parameter_count_matches_the_paper():
    with torch.device("meta"):
        model = build_model(ModelConfig(name="hrnet", backbone="hrnet_w48"), 19)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 65.9e6) / 65.9e6 < 0.02, count
    assert model.feature_channels == [48, 96, 192, 384]
    classification = ("incre_modules", "downsamp_modules", "final_layer", "classifier")
    assert not [k for k in model.backbone.state_dict() if any(part in k for part in classification)]


@pytest.mark.parametrize("preset", ["camvid", "camvid-deeplab", "camvid-ocr", "camvid-lite"])
def test_camvid_preset_networks_on_the_meta_device(preset):
    cfg = resolve_config(preset, overrides=["model.pretrained=false"])
    with torch.device("meta"):
        model = build_model(cfg.model, 11)
        out = model(torch.empty(2, 3, 360, 480))
    assert out["out"].shape == (2, 11, 360, 480)
    assert len(out["features"]) == len(cfg.contrast.resolved().lambdas) == 4
    expected = [4, 8, 8, 8] if preset == "camvid-deeplab" else [4, 8, 16, 32]
    assert model.feature_strides == expected


def test_pretrained_offline_fails_with_one_line(monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise LocalEntryNotFoundError("cannot reach the Hugging Face hub")

    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError) as error:
        build_model(ModelConfig(name="hrnet", backbone="hrnet_w18_small_v2", pretrained=True), 3)
    message = str(error.value)
    assert calls and "\n" not in message
    assert "the ImageNet weights timm/hrnet_w18_small_v2.ms_in1k (timm) are not in the cache" in message
    assert "model.weights: PATH" in message and "--set model.pretrained=false" in message


def test_local_hrnet_weights_load_from_a_plain_timm_state_dict(tmp_path):
    source = build_model(SMALL_MODELS["hrnet"], 3)
    plain = {k.removeprefix("body."): v for k, v in source.backbone.state_dict().items()}
    plain["classifier.weight"] = torch.zeros(10, 8)  # classification-only keys are ignored
    torch.save(plain, tmp_path / "hrnet.pt")
    loaded = build_model(SMALL_MODELS["hrnet"].model_copy(update={"weights": tmp_path / "hrnet.pt"}), 3)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(value, loaded.backbone.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_two_contextrast_training_steps(name, tmp_path):
    base = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=contextrast"]).to_dict()
    base["model"] = SMALL_MODELS[name].model_dump(mode="json")
    cfg = resolve_config(base=base)
    result = Trainer(cfg).run()
    first = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss_ce", "loss_ccl_l1", "loss_ccl_l4"} <= set(first)
    assert ("loss_aux" in first) == (name == "ocrnet")
    payload = load_checkpoint(result.run_dir / "last.pt")
    assert set(model_from_checkpoint(payload).state_dict()) == set(payload["model"])
    assert payload["initial_weights"] == "scratch"
