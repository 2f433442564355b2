"""The commands speak one language (issue 37), as a user types them: scores in percent on screen
and fractions in the files, `--set` with train's meaning and messages wherever a config applies,
`-o` wherever files are written, `--debug` on every group, one overwrite rule, the `presets`
command, and evaluate's summary kept whole at any width."""

import json
import re
from types import SimpleNamespace

import pytest
import yaml

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.test_export import random_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A random-init toy checkpoint (DeepLabV3+, contrastive heads) in a run folder, and its tiny data."""
    root = tmp_path_factory.mktemp("consistency")
    cfg = resolve_config(preset="toy", overrides=tiny_overrides(root))
    dataset = locate_dataset(cfg.data)
    checkpoint = root / "runs" / "toy" / "run" / "best.pt"
    random_checkpoint(checkpoint, cfg, dataset)
    image = sorted((dataset.root / "val" / "images").iterdir())[0]
    return SimpleNamespace(root=root, checkpoint=checkpoint, data=dataset.root, image=image)


def words(result) -> str:
    return " ".join(result.output.replace("│", " ").split())


def test_evaluate_prints_percent_writes_fractions_and_o_writes_the_family(toy, tmp_path):
    result = invoke("evaluate", "--checkpoint", toy.checkpoint, "--device", "cpu", "-o", tmp_path / "e")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["units"] == "fraction" and 0 <= metrics["mIoU"] <= 1
    assert f"mIoU {metrics['mIoU'] * 100:.2f} aAcc {metrics['aAcc'] * 100:.2f}" in words(result)
    # -o is --json and --report in one folder: the report's page embeds the curves and BANE views written beside it
    curves = ["curves.png"] if (toy.checkpoint.parent / "metrics.jsonl").exists() else []  # the run's log, if any
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == sorted(["bane", "confusion.png", "metrics.json",
                                                                         "per_class.csv", "report.html", *curves])
    assert f"{tmp_path / 'e'}/bane" in words(result) and f"{tmp_path / 'e'}/report.html" in words(result)
    # a specific flag moves one file elsewhere; the rest stay in -o
    moved = invoke("evaluate", "--checkpoint", toy.checkpoint, "--device", "cpu", "-o", tmp_path / "f",
                   "--json", tmp_path / "elsewhere.json", "--no-boundary")
    assert moved.exit_code == 0, moved.output
    assert (tmp_path / "elsewhere.json").is_file() and not (tmp_path / "f" / "metrics.json").exists()
    assert (tmp_path / "f" / "per_class.csv").is_file()


def test_evaluates_summary_keeps_every_field_whole_and_shows_the_windows(toy, monkeypatch):
    """Issue 37: `mBF ⏎ 12.91` at a narrow terminal; slide mode did not show its crop and stride."""
    import importlib

    monkeypatch.setattr(importlib.import_module("contextrast_cli.cli.app").out, "width", 44)
    result = invoke("evaluate", "--checkpoint", toy.checkpoint, "--device", "cpu", "--mode", "slide",
                    "--crop", "16x24", "--flip")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith(("│", "┃", "┏", "┡", "├", "└"))]
    summary = [line for line in lines if re.match(r"^(mIoU|scales|slide|mBIoU|mAcc|aAcc|float32)", line)]
    assert all(len(line) <= 44 for line in summary), summary
    for field in ("mIoU", "aAcc", "mAcc", "mBIoU", "mBF"):
        assert any(re.search(rf"\b{field} \d+\.\d\d\b", line) for line in summary), (field, summary)
    assert any("slide 16x24 stride 11x16" in line for line in summary), summary  # stride: 2/3 of the crop
    assert any("scales 1.0 + flip" in line for line in summary), summary


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "visualize-boundaries"])
def test_set_reads_and_fails_as_trains_does(toy, tmp_path, command):
    """The same value gives the same one-line error on every command that takes a config."""
    args = {"train": ["train", "--preset", "toy"], "evaluate": ["evaluate", "--checkpoint", toy.checkpoint],
            "predict": ["predict", toy.image, "--checkpoint", toy.checkpoint, "-o", tmp_path / "p"],
            "export": ["export", "--checkpoint", toy.checkpoint, "-o", tmp_path / "m.onnx"],
            "visualize-boundaries": ["visualize-boundaries", toy.image, "--checkpoint", toy.checkpoint]}[command]
    key = "contrast.bane.ratio" if command == "visualize-boundaries" else "eval.scales"
    expected = {"contrast.bane.ratio": "contrast.bane.ratio: Input should be a valid number",
                "eval.scales": "eval.scales: expected a list such as [1, 2], got 'abc'"}[key]
    one_line_error(invoke(*args, "--set", f"{key}=abc"), 2, f"invalid configuration: --set {key}=abc: {expected}")
    one_line_error(invoke(*args, "--set", "nokey"), 2, "--set 'nokey': expected key.path=value")


def test_set_on_a_checkpoint_means_what_the_flag_means_and_the_network_is_left_alone(toy, tmp_path):
    import cv2

    by_set = invoke("predict", toy.image, "--checkpoint", toy.checkpoint, "--device", "cpu", "-o", tmp_path / "a",
                    "--set", "eval.scales=[0.5]")
    by_flag = invoke("predict", toy.image, "--checkpoint", toy.checkpoint, "--device", "cpu", "-o", tmp_path / "b",
                     "--scales", "0.5")
    plain = invoke("predict", toy.image, "--checkpoint", toy.checkpoint, "--device", "cpu", "-o", tmp_path / "c")
    assert by_set.exit_code == by_flag.exit_code == plain.exit_code == 0, by_set.output + by_flag.output
    name = f"labels/{toy.image.name}"
    read = {k: cv2.imread(str(tmp_path / k / name), cv2.IMREAD_UNCHANGED) for k in "abc"}
    assert (read["a"] == read["b"]).all() and not (read["a"] == read["c"]).all()
    evaluated = invoke("evaluate", "--checkpoint", toy.checkpoint, "--device", "cpu", "--json", tmp_path / "s.json",
                       "--set", "eval.flip=true", "--set", "eval.scales=[0.5,1.0]", "--scales", "1.0")
    assert evaluated.exit_code == 0, evaluated.output
    protocol = json.loads((tmp_path / "s.json").read_text())["eval"]
    assert protocol["flip"] is True and protocol["scales"] == [1.0]  # --set < the flag, as in train
    one_line_error(invoke("evaluate", "--checkpoint", toy.checkpoint, "--set", "model.backbone=resnet50"), 2,
                   "--set model.backbone=resnet50: evaluate rebuilds the trained network from its checkpoint")


def test_export_set_is_recorded_in_the_sidecar_and_the_rewrite_says_so(toy, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"an older export")
    (tmp_path / "m.onnx.json").write_text("{}")
    result = invoke("export", "--checkpoint", toy.checkpoint, "-o", tmp_path / "m.onnx", "--no-verify",
                    "--set", "eval.flip=true")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.onnx.json").read_text())["eval"]["flip"] is True
    assert f"note: replaced 2 existing files: {tmp_path / 'm.onnx'}, {tmp_path / 'm.onnx.json'}" in words(result)


@pytest.mark.parametrize("command", ["evaluate", "predict", "visualize-boundaries"])
def test_every_output_is_replaced_with_one_line_saying_so(toy, tmp_path, command):
    """The overwrite rule (issue 37): what a command writes again is replaced, and one line says so
    (prepare-data's datasets alone refuse without --force: test_cli.test_prepare_synthetic_then_refuse_overwrite)."""
    args = {"evaluate": ["evaluate", "--checkpoint", toy.checkpoint, "--device", "cpu"],
            "predict": ["predict", toy.image, "--checkpoint", toy.checkpoint, "--device", "cpu"],
            "visualize-boundaries": ["visualize-boundaries", toy.image, "--checkpoint", toy.checkpoint,
                                     "--device", "cpu"]}[command]
    first = invoke(*args, "-o", tmp_path / "o")
    assert first.exit_code == 0 and "note: replaced" not in first.output, first.output
    written = sorted(p for p in (tmp_path / "o").rglob("*") if p.is_file())
    second = invoke(*args, "-o", tmp_path / "o")
    assert second.exit_code == 0, second.output
    notes = [line for line in second.output.splitlines() if line.startswith("note: replaced")]
    count = f"{len(written)} existing files" if len(written) > 1 else "an existing file"
    assert len(notes) == 1 and notes[0].startswith(f"note: replaced {count}: "), second.output


@pytest.mark.parametrize("group,rest", [("prepare-data", ["synthetic", "--out", "x", "--size", "0x9"]),
                                        ("presets", ["show", "nope"])])
def test_debug_is_taken_by_every_group(group, rest, tmp_path, monkeypatch):
    """Issue 37: `prepare-data --debug folder ...` was refused as an unknown option."""
    monkeypatch.chdir(tmp_path)
    result = invoke(group, "--debug", *rest)
    assert "No such option" not in result.output, result.output
    if group == "prepare-data":  # a bad value: the one line, with or without --debug
        assert result.exit_code == 2 and "expected HxW" in result.output
    else:  # --debug: the library's exception is not turned into a message
        assert result.exception is not None and not isinstance(result.exception, SystemExit)


def test_presets_list_groups_by_dataset_and_reads_imagenet_from_the_yaml(tmp_path, monkeypatch):
    from contextrast_cli.config import presets_dir

    folder = tmp_path / "presets"
    folder.mkdir()
    base = yaml.safe_load((presets_dir() / "toy.yaml").read_text())
    for name, dataset, pretrained in (("zz-toy", "synthetic", True), ("synthetic", "synthetic", False),
                                      ("aa-camvid", "camvid", False), ("camvid", "camvid", True)):
        data = {k: v for k, v in base["data"].items() if dataset == "synthetic" or k != "synthetic"}
        doc = {**base, "name": name, "description": f"the {name} preset", "data": {**data, "dataset": dataset},
               "model": {**base.get("model", {}), "pretrained": pretrained}}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr("contextrast_cli.config.resolve.presets_dir", lambda: folder)
    for args in (["presets", "list"], ["presets"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        rows = [[c.strip() for c in cells] for line in result.output.splitlines()
                if len(cells := line.split("│")[1:-1]) == 3 and cells[0].strip()]
        groups = [r[0] for r in rows if not r[0].startswith("  ") and not r[1]]
        assert [r[0] for r in rows] == ["camvid", "camvid", "aa-camvid", "synthetic", "synthetic", "zz-toy"], rows
        assert groups == ["camvid", "synthetic"]  # dataset headings; then the preset named after it, then by name
        assert [r[1] for r in rows if r[1]] == ["yes", "no", "no", "yes"]


def test_presets_show_marks_the_papers_values_and_stays_loadable():
    result = invoke("presets", "show", "camvid")
    assert result.exit_code == 0, result.output
    assert "  alpha: 0.1  # paper" in result.output
    assert "  tau: 0.1  # default, not in paper" in result.output
    assert "  scale_range:  # paper: 0.5-2.0" in result.output
    assert "  momentum: 0.9" in result.output and "optim:  # paper: momentum 0.9" in result.output
    assert yaml.safe_load(result.output) == resolve_config(preset="camvid").to_dict()
    error = invoke("presets", "show", "nosuch")
    one_line_error(error, 2, "unknown preset 'nosuch'")
    assert "--config" not in error.output and "contextrast presets list" in error.output
