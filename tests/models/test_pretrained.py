"""ImageNet starts (issue 35): weights come from the Hugging Face hub cache in its real layout,
offline; an empty cache stops training with one line; checkpoints record where weights came from.

The cache is written here as huggingface_hub lays it out: ``$HF_HOME/hub/models--<org>--<name>/``
with ``refs/main`` holding a commit hash and ``snapshots/<hash>/`` holding the files. The
libraries run offline (``HF_HUB_OFFLINE=1``, conftest), so nothing here touches the network.
"""

import json

import pytest
import safetensors.torch
import timm
import torch
from transformers import SegformerConfig, SegformerModel

from contextrast_cli.config import ModelConfig, resolve_config
from contextrast_cli.errors import ConfigError
from contextrast_cli.models.checkpoint import load_checkpoint
from contextrast_cli.models.registry import build_model
from contextrast_cli.train.trainer import Trainer
from tests.conftest import invoke, one_line_error, tiny_overrides

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def snapshot(home, repo: str):
    """The snapshot folder of ``repo`` in ``home``'s hub cache, with ``refs/main`` pointing at it."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    folder = root / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    return home


def cache_mit_b0(home) -> dict[str, torch.Tensor]:
    """Random MiT-B0 weights saved by transformers' own ``save_pretrained`` into the cache of ``nvidia/mit-b0``."""
    torch.manual_seed(7)
    source = SegformerModel(SegformerConfig(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2]))
    source.save_pretrained(snapshot(home, "nvidia/mit-b0"))
    return {k: v.clone() for k, v in source.state_dict().items()}


def test_segformer_encoder_loads_the_cached_hub_weights(hf_home):
    cached = cache_mit_b0(hf_home)
    model = build_model(ModelConfig(name="segformer", backbone="mit-b0", pretrained=True), 5)
    encoder = model.backbone.body.state_dict()
    assert set(encoder) == set(cached)
    for key, value in cached.items():
        assert torch.equal(encoder[key], value), key
    scratch = build_model(ModelConfig(name="segformer", backbone="mit-b0"), 5).backbone.body.state_dict()
    assert not torch.equal(scratch["stages.0.patch_embeddings.proj.weight"],
                           cached["stages.0.patch_embeddings.proj.weight"])


def test_timm_encoder_loads_the_cached_hub_weights(hf_home):
    torch.manual_seed(3)
    full = timm.create_model("mobilenetv2_100")  # the classifier's tensors too, as the hub file holds them
    folder = snapshot(hf_home, "timm/mobilenetv2_100.ra_in1k")
    cached = {k: v.contiguous() for k, v in full.state_dict().items()}
    safetensors.torch.save_file(cached, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": "mobilenetv2_100", "num_classes": 1000}))
    model = build_model(ModelConfig(name="deeplabv3plus", backbone="mobilenetv2_100", output_stride=32,
                                    pretrained=True), 5)
    encoder = model.backbone.body.state_dict()
    assert len(encoder) > 100
    for key, value in encoder.items():
        assert torch.equal(value, cached[key]), key


@pytest.mark.parametrize("config,weights", [
    (ModelConfig(name="segformer", backbone="mit-b1", pretrained=True), "nvidia/mit-b1 (transformers)"),
    (ModelConfig(name="upernet", backbone="swin_tiny_patch4_window7_224", pretrained=True),
     "timm/swin_tiny_patch4_window7_224.ms_in1k (timm)"),
    (ModelConfig(name="hrnet", backbone="hrnet_w18_small_v2", pretrained=True), "timm/hrnet_w18_small_v2.ms_in1k (timm)"),
])
def test_an_empty_cache_is_one_error_naming_weights_cache_and_fixes(hf_home, config, weights):
    with pytest.raises(ConfigError) as error:
        build_model(config, 3)
    message = str(error.value)
    assert "\n" not in message
    assert f"the ImageNet weights {weights} are not in the cache {hf_home / 'hub'}" in message
    assert "model.weights: PATH" in message and "--set model.pretrained=false" in message


def test_training_stops_first_with_one_line_and_exit_code_2(hf_home, tmp_path):
    result = invoke("train", "--preset", "cityscapes-segformer-b0", "--runs-dir", tmp_path / "runs",
                    "--data-root", tmp_path / "nowhere")  # a missing dataset would be the other error
    one_line_error(result, 2, f"the ImageNet weights nvidia/mit-b0 (transformers) are not in the cache "
                              f"{hf_home / 'hub'}")
    assert "model.weights: PATH" in result.output and "--set model.pretrained=false" in result.output
    assert not (tmp_path / "runs").exists()


def test_checkpoints_record_their_initial_weights(hf_home, tmp_path):
    cache_mit_b0(hf_home)
    base = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2)).to_dict()
    base["model"] = {"name": "segformer", "backbone": "mit-b0", "pretrained": True, "options": {"channels": 16}}
    run = Trainer(resolve_config(base=base)).run()
    assert load_checkpoint(run.run_dir / "last.pt")["initial_weights"] == f"imagenet:nvidia/mit-b0@{hf_home / 'hub'}"
    base["model"]["weights"] = str(tmp_path / "mit.pt")
    torch.save(build_model(ModelConfig(name="segformer", backbone="mit-b0"), 5).backbone.state_dict(), tmp_path / "mit.pt")
    base["train"]["output_dir"] = str(tmp_path / "runs2")
    run = Trainer(resolve_config(base=base)).run()
    assert load_checkpoint(run.run_dir / "last.pt")["initial_weights"] == f"file:{tmp_path / 'mit.pt'}"


def test_presets_list_says_which_start_from_imagenet():
    listing = invoke("presets", "list")
    assert listing.exit_code == 0, listing.output
    rows = {cells[0]: cells[1] for line in listing.output.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 3 and cells[0]}
    for name in ("cityscapes-segformer-b0", "ade20k-segformer-b1", "cityscapes-upernet-swin-t",
                 "cityscapes-mobilenetv2", "folder", "camvid"):
        assert rows[name] == "yes", (name, listing.output)
    assert rows["toy"] == rows["camvid-lite"] == "no"
