"""Every dataset preset trains a few steps and evaluates through the CLI, on its dataset's
native-layout fixture converted with ``prepare-data`` (crop, iterations and network shrunk)."""

import json

import pytest

from contextrast_cli.config import list_presets, resolve_config
from tests.conftest import invoke
from tests.data import fixtures

FIXTURES = {  # dataset -> (write the native layout, prepare-data arguments after the name)
    "camvid": (fixtures.camvid, lambda root: ["--source", root]),
    "cityscapes": (fixtures.cityscapes, lambda root: ["--source", root]),
    "ade20k": (fixtures.ade20k, lambda root: ["--source", root]),
    "pascal-context": (fixtures.pascal_context, lambda root: ["--source", root]),
    "coco-stuff": (fixtures.coco_stuff_164k, lambda root: ["--source", root]),
    "folder": (fixtures.folder, lambda root: ["--images", root / "images", "--labels", root / "labels",
                                              "--classes", root / "classes.txt", "--val-fraction", 0.25]),
}
DATASET_PRESETS = sorted(name for name in list_presets() if resolve_config(name).data.dataset in FIXTURES)


def small_network(preset: str) -> list[str]:
    """--set items keeping the preset's kind of network, at the smallest size, from scratch (the
    tests never download ImageNet weights)."""
    model = resolve_config(preset).model
    scratch = ["model.pretrained=false"]
    if model.name in ("hrnet", "ocrnet"):
        sets = scratch + ["model.backbone=hrnet_w18_small_v2"]
        return sets + (["model.options={channels: 32, key_channels: 16}"] if model.name == "ocrnet" else [])
    if model.name == "segformer":
        return scratch + ["model.backbone=mit-b0", "model.options={channels: 32}"]
    if model.name == "upernet":
        return scratch + ["model.options={channels: 32, depths: [2, 2, 2, 1], img_size: [32, 32]}"]
    backbone = "mobilenetv2_100" if model.backbone == "mobilenetv2_100" else "resnet18"
    return scratch + [f"model.backbone={backbone}", "model.output_stride=32", "model.options={channels: 32}"]


def small_base(preset: str) -> tuple[list[str], dict | None]:
    """--set items keeping the preset's kind of base size (long and short bound, or long side) at
    the fixtures' scale (24x32 images), and the base size the checkpoint should then carry."""
    base = resolve_config(preset).data.base_size
    if base is None:
        return [], None
    small = {"long": 64, "short": 32} if base.short is not None else {"long": 48, "short": None}
    return [f"data.base_size={{long: {small['long']}, short: {small['short'] or 'null'}}}"], small


def test_every_dataset_preset_is_covered():
    others = [name for name in list_presets() if name not in DATASET_PRESETS]
    assert others == ["toy"]  # synthetic scenes: trained by the other tests
    assert {resolve_config(name).data.dataset for name in DATASET_PRESETS} == set(FIXTURES)


@pytest.mark.parametrize("preset", DATASET_PRESETS)
def test_preset_trains_and_evaluates_on_its_fixture(preset, tmp_path):
    dataset = resolve_config(preset).data.dataset
    write, arguments = FIXTURES[dataset]
    source, data = write(tmp_path / "source"), tmp_path / "data"
    prepared = invoke("prepare-data", dataset, *arguments(source), "--out", data)
    assert prepared.exit_code == 0, prepared.output
    base_sets, base = small_base(preset)
    sets = small_network(preset) + base_sets + ["data.crop_size=[32, 32]", "data.workers=0", "train.device=cpu",
                                                "train.eval_interval=2", "train.log_interval=1"]
    trained = invoke("train", "--preset", preset, "--data-root", data, "--iterations", 2, "--batch-size", 2,
                     "--runs-dir", tmp_path / "runs", *[a for s in sets for a in ("--set", s)])
    assert trained.exit_code == 0, trained.output
    (run_dir,) = (tmp_path / "runs" / preset).iterdir()
    evaluated = invoke("evaluate", "--checkpoint", run_dir, "--device", "cpu", "--json", tmp_path / "m.json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    classes = json.loads((data / "dataset.json").read_text())["classes"]
    assert list(metrics["IoU"]) == classes and metrics["num_images"] >= 1
    assert metrics["eval"]["base_size"] == base  # the checkpoint carries the preset's kind of base size
    defined = [v for v in metrics["IoU"].values() if v is not None]
    assert metrics["mIoU"] == pytest.approx(sum(defined) / len(defined), abs=1e-6)  # the mean of the classes scored
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_ccl_l1" in r for r in logged)  # Contextrast ran on this dataset's classes
