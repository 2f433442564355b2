"""Preset schema, sources and precedence."""

import pytest
from pydantic import ValidationError

from contextrast_cli.config import BaseSize, Config, eval_settings, list_presets, resolve_config
from contextrast_cli.errors import ConfigError


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_preset_validates(name):
    cfg = resolve_config(preset=name)
    assert isinstance(cfg, Config)
    assert cfg.name == name
    assert cfg.description
    # the resolved YAML round-trips to the same config
    assert Config.model_validate(cfg.to_dict()) == cfg


def test_expected_presets_exist():
    assert {"toy", "camvid", "cityscapes", "ade20k", "pascal-context", "coco-stuff", "folder"} <= set(list_presets())


def test_camvid_preset_is_the_paper_recipe():
    cfg = resolve_config(preset="camvid")
    assert cfg.data.crop_size == (360, 480)
    assert (cfg.train.batch_size, cfg.train.iterations, cfg.optim.lr) == (16, 6000, 0.02)
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.poly_power) == (0.9, 5e-4, 0.9)
    assert cfg.data.scale_range == (0.5, 2.0)


def test_precedence_preset_file_set_flag(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  iterations: 11\n  batch_size: 3\n  seed: 5\n")
    cfg = resolve_config("toy", path, ["train.batch_size=4", "train.seed=6"], {"train.seed": 7})
    assert cfg.train.iterations == 11      # file beats preset
    assert cfg.train.batch_size == 4       # --set beats file
    assert cfg.train.seed == 7             # flag beats --set
    assert cfg.data.dataset == "synthetic"  # untouched preset value survives the merge
    assert cfg.name == "toy"


def test_set_values_are_parsed_as_yaml():
    cfg = resolve_config("toy", overrides=["data.crop_size=[64, 80]", "data.hflip=false", "optim.lr=1e-3"])
    assert cfg.data.crop_size == (64, 80)
    assert cfg.data.hflip is False
    assert cfg.optim.lr == pytest.approx(1e-3)


def test_config_is_frozen():
    cfg = resolve_config("toy")
    with pytest.raises(ValidationError, match="frozen_instance|Instance is frozen"):
        cfg.train.iterations = 3  # type: ignore[misc]
    assert cfg.train.iterations == 600


def test_unknown_key_names_file_line_and_choices(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("data:\n  dataset: camvid\n  crop_size: [8, 8]\ntrain:\n  iterations: 1\n  batch_sise: 2\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(config_file=path)
    message = str(info.value)
    assert f"{path}:6: train.batch_sise: unknown key" in message
    assert "batch_size" in message  # the valid keys are listed
    assert "train.batch_size: required field is missing" in message  # every problem, not the first


def test_bad_value_from_set_names_the_override():
    with pytest.raises(ConfigError) as info:
        resolve_config("toy", overrides=["train.iterations=-3", "data.dataset=mnist"])
    message = str(info.value)
    assert "--set train.iterations=-3: train.iterations:" in message
    assert "--set data.dataset=mnist: data.dataset: unknown dataset 'mnist'" in message


def test_bad_device_and_scale_range():
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_config("toy", overrides=["train.device=gpu0"])
    with pytest.raises(ConfigError, match="low <= high"):
        resolve_config("toy", overrides=["data.scale_range=[2.0, 0.5]"])


def test_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  iterations: 1\n  batch_size: [2\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        resolve_config(config_file=path)


@pytest.mark.parametrize("text", ["train.iterations", "=3", "train..x=1"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="expected key.path=value"):
        resolve_config("toy", overrides=[text])


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: .*toy"):
        resolve_config("nope")


def test_synthetic_section_only_for_synthetic():
    with pytest.raises(ConfigError, match="only valid with dataset: synthetic"):
        resolve_config("camvid", overrides=["data.synthetic={num_train: 2}"])


def test_resnet_tap_presets_ship_narrow_heads():
    """Presets whose taps are ResNet stages use hidden width 128 (METHOD.md); HRNet presets keep 512,
    which equals every HRNet-W48 branch width."""
    from contextrast_cli.contrast.criterion import build_criterion

    for name in list_presets():
        cfg = resolve_config(name)
        resnet = cfg.model.backbone.startswith("resnet")
        assert cfg.contrast.hidden_cap == (128 if resnet and name != "toy" else 512), name
    heads = build_criterion(resolve_config("camvid-deeplab").contrast, [256, 512, 1024, 2048], 11).heads
    assert [head.net[0].out_channels for head in heads] == [128, 128, 128, 128]


def test_presets_test_with_the_papers_protocol():
    """METHOD.md section 4: multi-scale 0.75-2.0 (step 0.25) with flip, single scale for Cityscapes."""
    paper = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    for name in ("ade20k", "pascal-context", "coco-stuff", "coco-stuff-164k", "camvid", "camvid-ocr", "camvid-deeplab"):
        cfg = resolve_config(name).eval
        assert (cfg.scales, cfg.flip) == (paper, True), name
    assert resolve_config("cityscapes").eval.scales == (1.0,) and not resolve_config("cityscapes").eval.flip


# Hand-computed with mmcv's rule: factor = min(long / max(H, W), short / min(H, W)), side -> int(side * factor + 0.5)
@pytest.mark.parametrize("base,size,scale,expected", [
    ({"long": 2048, "short": 512}, (1500, 2000), 1.0, (512, 683)),    # 512/1500 binds: 2000 * 0.34133 = 682.67
    ({"long": 2048, "short": 512}, (512, 683), 1.0, (512, 683)),      # an ADE20K-sized image stays as it is
    ({"long": 2048, "short": 512}, (256, 256), 1.0, (512, 512)),      # small images are enlarged (factor 2)
    ({"long": 2048, "short": 512}, (500, 3000), 1.0, (341, 2048)),    # 2048/3000 binds: 500 * 0.68267 = 341.33
    ({"long": 2048, "short": 1024}, (1024, 2048), 1.0, (1024, 2048)),  # Cityscapes: unchanged
    ({"long": 2048, "short": 512}, (1500, 2000), 0.75, (384, 512)),   # bounds 1536 x 384
    ({"long": 2048, "short": 512}, (1500, 2000), 1.75, (896, 1195)),  # 2000 * 0.59733 = 1194.67
    ({"long": 520}, (375, 500), 1.0, (390, 520)),                     # HRNet: the long side becomes 520
    ({"long": 520}, (427, 640), 1.0, (347, 520)),                     # 427 * 0.8125 = 346.94 rounds up
    ({"long": 520}, (500, 333), 1.0, (520, 346)),                     # portrait: 333 * 1.04 = 346.32
    ({"long": 520}, (1500, 2000), 2.0, (780, 1040)),                  # long side 520 * 2
])
def test_base_size_fit_by_hand(base, size, scale, expected):
    assert BaseSize(**base).fit(*size, scale) == expected


def test_long_side_base_equals_a_square_bound():
    """HRNet's base_size 520 is mmcv's scale (520, 520): the short side's bound never binds."""
    for size in [(375, 500), (500, 375), (427, 640), (1, 1000), (999, 1000), (1000, 1000), (2048, 13)]:
        assert BaseSize(long=520).fit(*size) == BaseSize(long=520, short=520).fit(*size)


def test_eval_base_size_defaults_to_the_data_one():
    cfg = resolve_config("toy", overrides=["data.base_size={long: 64, short: 48}"])
    assert cfg.data.base_size == BaseSize(long=64, short=48) and cfg.eval.base_size == cfg.data.base_size
    own = resolve_config("toy", overrides=["data.base_size={long: 64}", "eval.base_size={long: 96}"])
    assert own.eval.base_size == BaseSize(long=96)
    assert resolve_config("toy").data.base_size is None and resolve_config("toy").eval.base_size is None
    # what the ONNX sidecar stores (the eval section as JSON) reads back with its base size
    assert eval_settings(cfg.eval.model_dump(mode="json")).base_size == BaseSize(long=64, short=48)


@pytest.mark.parametrize("value,message", [
    ("{long: 512, short: 2048}", r"^invalid configuration: --set data\.base_size=.*: data\.base_size: short \(2048\) "
                                 r"must not exceed long \(512\)$"),
    ("{long: 2048, scale: 512}", r"^invalid configuration: .*data\.base_size\.scale: unknown key; valid keys here: long, short$"),
    ("{long: 0}", r"^invalid configuration: .*data\.base_size\.long: Input should be greater than 0"),
])
def test_bad_base_size_is_one_line_naming_the_field(value, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config("toy", overrides=[f"data.base_size={value}"])
    assert "\n" not in str(info.value)


def test_dataset_presets_resize_to_their_codebases_base_size():
    """mmsegmentation (2048, 512) / (2048, 1024); HRNet-Semantic-Segmentation base_size 520 (long side)."""
    expected = {"cityscapes": BaseSize(long=2048, short=1024), "ade20k": BaseSize(long=2048, short=512),
                "pascal-context": BaseSize(long=520), "coco-stuff": BaseSize(long=520),
                "coco-stuff-164k": BaseSize(long=2048, short=512), "ade20k-segformer-b1": BaseSize(long=2048, short=512),
                **dict.fromkeys(["cityscapes-segformer-b0", "cityscapes-upernet-swin-t", "cityscapes-mobilenetv2"],
                                BaseSize(long=2048, short=1024))}
    for name in list_presets():
        cfg = resolve_config(name)
        assert cfg.data.base_size == expected.get(name), name
        assert cfg.eval.base_size == cfg.data.base_size, name
    big = resolve_config("coco-stuff-164k")
    assert (big.data.dataset, big.data.crop_size, big.train.batch_size, big.train.iterations) == (
        "coco-stuff", (512, 512), 16, 80000)


def test_contextrast_plus_plus_settings_follow_the_method():
    """Issue 34: ++'s defaults (adaptive fusion, the AA loss, lambdas 0.1/0.3/0.7/1.0) come with the
    method, Contextrast keeps its own, the ++ parts are refused under Contextrast in one line, and a
    saved config that switches method takes the new method's defaults (they are stored as null)."""
    plus = resolve_config("camvid-lite", overrides=["contrast.method=contextrast++"]).contrast.resolved()
    assert (plus.fusion, plus.aa.enabled, plus.lambdas, plus.aa.bank_size) == ("adaptive", True, (0.1, 0.3, 0.7, 1.0), 100)
    ccl = resolve_config("camvid-lite").contrast
    assert ccl.resolved().fusion == "static" and not ccl.resolved().aa.enabled
    assert ccl.resolved().lambdas == (0.1, 0.4, 0.7, 1.0)
    switched = resolve_config(base=resolve_config("camvid-lite").to_dict(), overrides=["contrast.method=contextrast++"])
    assert switched.contrast.resolved().lambdas == (0.1, 0.3, 0.7, 1.0) and switched.contrast.resolved().aa.enabled
    table = resolve_config("camvid-lite", overrides=["contrast.method=contextrast++", "contrast.fusion=static",
                                                    "contrast.aa.enabled=false", "contrast.layers=[2, 4]"]).contrast
    assert table.resolved().lambdas == (0.3, 1.0) and table.resolved().fusion == "static"
    with pytest.raises(ConfigError, match=r"contrast.aa.enabled: true are Contextrast\+\+'s; set contrast.method"):
        resolve_config("camvid-lite", overrides=["contrast.aa.enabled=true"])
    with pytest.raises(ConfigError, match="contrast.aa.selection"):
        resolve_config("camvid-lite", overrides=["contrast.method=contextrast++", "contrast.aa.selection=latest"])


def test_optim_fields_default_to_the_papers_sgd_and_validate():
    """Issue 35: AdamW and a linear schedule for the transformer presets; an old config without the new
    fields (a checkpoint's) resolves to SGD + poly as before; bad values fail in one line."""
    old = resolve_config("toy").to_dict()
    for key in ("name", "betas", "schedule", "head_lr_mult", "no_decay_norms"):
        old["optim"].pop(key)
    optim = Config.model_validate(old).optim
    assert (optim.name, optim.schedule, optim.betas, optim.head_lr_mult, optim.no_decay_norms) == (
        "sgd", "poly", (0.9, 0.999), 1.0, False)
    segformer = resolve_config("cityscapes-segformer-b0").optim
    assert (segformer.name, segformer.lr, segformer.betas, segformer.weight_decay) == ("adamw", 6e-5, (0.9, 0.999), 0.01)
    assert (segformer.schedule, segformer.warmup_iters, segformer.head_lr_mult) == ("linear", 1500, 10.0)
    assert segformer.no_decay_norms and resolve_config("cityscapes-upernet-swin-t").optim.no_decay_norms
    assert resolve_config("cityscapes-mobilenetv2").optim.name == "sgd"
    for value, text in [("optim.name=adam", "optim.name"), ("optim.betas=[0.9, 1.5]", "optim.betas"),
                        ("optim.schedule=cosine", "optim.schedule"), ("optim.head_lr_mult=0", "optim.head_lr_mult")]:
        with pytest.raises(ConfigError, match=text) as info:
            resolve_config("toy", overrides=[value])
        assert "\n" not in str(info.value)


def test_paper_presets_start_from_imagenet_and_the_offline_ones_do_not():
    for name in list_presets():
        assert resolve_config(name).model.pretrained == (name not in ("toy", "camvid-lite")), name
    folder = resolve_config("folder").model
    assert (folder.name, folder.backbone) == ("segformer", "mit-b1")
