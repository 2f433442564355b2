"""The command line through Typer's CliRunner: one way through every command, exit codes, messages."""

import json
import shutil

import pytest
import torch

from contextrast_cli import __version__
from contextrast_cli.errors import CheckpointError, DataError
from tests.conftest import invoke, one_line_error, tiny_overrides

COMMANDS = [  # every command, with arguments that make it fail on bad input (a missing file)
    ("train", "--preset", "nope"),
    ("evaluate", "--checkpoint", "missing.pt"),
    ("export", "--checkpoint", "missing.pt"),
    ("visualize-boundaries", "x.png", "--checkpoint", "missing.pt"),
    ("visualize", "x.png", "--checkpoint", "missing.pt"),
    ("prepare-data", "camvid", "--source", "nowhere", "--out", "out"),
    ("prepare-data", "synthetic", "--out", "x", "--size", "0x9"),
    ("presets", "show", "nope"),
]


def help_text(command: str) -> str:
    """``command --help`` as one line of words (rich's boxes and wrapping removed)."""
    return " ".join(invoke(command, "--help").output.replace("│", " ").split())


def sets(tmp_path, iterations=2):
    return [arg for item in tiny_overrides(tmp_path, iterations) for arg in ("--set", item)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-iteration toy run (tiny synthetic data): its folder."""
    root = tmp_path_factory.mktemp("cli")
    trained = invoke("train", "--preset", "toy", *sets(root))
    assert trained.exit_code == 0, trained.output
    (run_dir,) = (root / "runs" / "toy").iterdir()
    return run_dir


def test_help_lists_commands_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("prepare-data", "train", "evaluate", "visualize-boundaries", "export", "presets"):
        assert name in result.output
    assert invoke("--version").output.strip() == f"contextrast {__version__}"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_debug_is_accepted_after_and_before_every_command(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = invoke(*args)
    assert plain.exit_code == 2 and "Traceback" not in plain.output, plain.output
    for debug_args in ([*args, "--debug"], ["--debug", *args]):
        result = invoke(*debug_args)
        if args[-1] == "0x9":  # a bad option value: the one line, with or without --debug
            assert result.exit_code == 2 and "expected HxW" in result.output
            continue
        # with --debug the library's exception is not turned into a message: the traceback shows
        assert result.exit_code != 0 and result.exception is not None, result.output
        assert not isinstance(result.exception, SystemExit), result.output


def test_hidden_aliases_are_not_in_help():
    for command, old, new in (("train", "--output-dir", "--runs-dir"), ("export", "--output", "--out"),
                              ("export", "--height", "--size")):
        shown = help_text(command)
        assert new in shown and f"{old} " not in shown


def test_presets_list_and_show():
    listing = invoke("presets")
    assert listing.exit_code == 0 and "toy" in listing.output and "camvid" in listing.output
    shown = invoke("presets", "show", "camvid")
    assert shown.exit_code == 0 and "crop_size:\n  - 360\n  - 480" in shown.output
    one_line_error(invoke("presets", "show", "nope"), 2, "unknown preset 'nope'")


@pytest.mark.parametrize("value,text", [
    ("train.batch_size=zero", "train.batch_size: Input should be a valid integer"),
    ("data.crop_size=96", "data.crop_size: expected a list such as [1, 2], got 96"),
    ("data.crop_size=[96, 128, 3]", "data.crop_size: Tuple should have at most 2 items, got [96, 128, 3]"),
    ("contrast.bane=0.5", "contrast.bane: expected a section: {key: value, ...}, or set its keys one by one "
                          "(contrast.bane.key=value), got 0.5"),
    ("model.options=[1]", "model.options: expected a mapping such as {key: value}, got [1]"),
])
def test_set_with_a_wrong_value_or_shape_is_one_line(value, text):
    one_line_error(invoke("train", "--preset", "toy", "--set", value), 2,
                   f"invalid configuration: --set {value}: {text}")


def test_missing_data_names_the_prepare_command(tmp_path):
    result = invoke("train", "--preset", "camvid", "--data-root", tmp_path / "nowhere", "--set", "model.pretrained=false")
    one_line_error(result, 2, "prepare-data camvid --source")


@pytest.mark.parametrize("command", ["train", "evaluate", "visualize", "evaluate-onnx"])
def test_explicit_data_root_must_exist_and_is_never_created(run, tmp_path, command):
    """Synthetic scenes are generated on first use only at the configured root: an explicit
    --data-root that does not exist is an error naming prepare-data, and nothing appears there."""
    missing = tmp_path / "nonexistent"
    args = {"train": ["train", "--preset", "toy", *sets(tmp_path), "--data-root", missing],
            "evaluate": ["evaluate", "--checkpoint", run, "--data-root", missing],
            "visualize": ["visualize", "--split", "val", "--checkpoint", run, "--data-root", missing],
            "evaluate-onnx": ["evaluate", "--onnx", tmp_path / "m.onnx", "--data-root", missing]}[command]
    if command == "evaluate-onnx":
        (tmp_path / "m.onnx").write_bytes(b"")
        (tmp_path / "m.onnx.json").write_text(json.dumps({"format": "contextrast-onnx", "dataset": {"name": "synthetic"}}))
    one_line_error(invoke(*args), 2, f"prepare it with: contextrast prepare-data synthetic --out {missing}")
    assert not missing.exists()


def test_prepare_synthetic_then_refuse_overwrite(tmp_path):
    args = ("prepare-data", "synthetic", "--out", tmp_path / "s", "--num-train", 3, "--num-val", 2,
            "--size", "24x32")
    assert invoke(*args).exit_code == 0
    meta = json.loads((tmp_path / "s" / "dataset.json").read_text())
    assert meta["splits"] == {"train": 3, "val": 2} and meta["name"] == "synthetic"
    one_line_error(invoke(*args), 2, "--force")
    assert invoke("prepare-data", "synthetic", "--out", tmp_path / "t", "--size", "24by32").exit_code == 2


def test_prepare_data_synthetic_bad_size_is_one_line(tmp_path):
    """--size is parsed inside the command's error handling: the project's one line, not Click's usage box."""
    one_line_error(invoke("prepare-data", "synthetic", "--out", tmp_path / "s", "--size", "12y4"), 2, "--size")
    assert not (tmp_path / "s").exists()


def test_train_evaluate_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = invoke("train", "--preset", "toy", *sets(tmp_path), "--runs-dir", tmp_path / "mine")
    assert trained.exit_code == 0, trained.output
    assert "best val mIoU" in trained.output
    (run_dir,) = (tmp_path / "mine" / "toy").iterdir()  # --runs-dir beats the --set train.output_dir
    # evaluate without --checkpoint finds the newest best.pt under --runs-dir
    evaluated = invoke("evaluate", "--runs-dir", tmp_path / "mine", "--json", tmp_path / "m.json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert metrics["mIoU"] == pytest.approx(best["metrics"]["mIoU"], abs=1e-9)
    assert metrics["precision"] == "float32" and f"{metrics['mIoU'] * 100:.2f}" in evaluated.output
    # --resume continues the same run folder (its last.pt) to a longer schedule
    resumed = invoke("train", "--resume", run_dir, "--iterations", 3)
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(run_dir / "last.pt", weights_only=True)["iteration"] == 3


def test_old_runs_dir_spelling_still_works_with_a_note(tmp_path):
    result = invoke("train", "--preset", "toy", *sets(tmp_path, 1), "--output-dir", tmp_path / "old")
    assert result.exit_code == 0, result.output
    assert "--output-dir is now --runs-dir" in result.output and len(list((tmp_path / "old" / "toy").iterdir())) == 1
    clash = invoke("train", "--preset", "toy", "--output-dir", tmp_path / "a", "--runs-dir", tmp_path / "b")
    assert clash.exit_code == 2 and "give --runs-dir once" in clash.output


def test_resume_from_a_weights_only_checkpoint_names_last_pt(run):
    one_line_error(invoke("train", "--resume", run / "best.pt"), 2,
                   f"cannot resume a run; resume with: contextrast train --resume {run / 'last.pt'}")


def test_resume_with_a_preset_that_changes_the_network_is_one_line(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    one_line_error(invoke("train", "--resume", copy, "--preset", "toy", "--set", "model.backbone=resnet34"), 2,
                   "holds a deeplabv3plus / resnet18 network but the config asks for deeplabv3plus / resnet34")
    one_line_error(invoke("train", "--resume", copy, "--set", "contrast.method=none"), 2,
                   "resume with the same method")
    one_line_error(invoke("train", "--resume", copy, "--init-from", copy), 2, "pass only one")


def test_a_run_folder_means_best_pt_or_last_pt_with_a_note(run, tmp_path):
    evaluated = invoke("evaluate", "--checkpoint", run, "--device", "cpu", "--json", tmp_path / "a.json")
    assert evaluated.exit_code == 0 and "using its last.pt" not in evaluated.output, evaluated.output
    # best.pt was chosen on val and is scored on val again: said, and recorded in the JSON
    assert "this best.pt was chosen by its val mIoU during training" in evaluated.output
    scored = json.loads((tmp_path / "a.json").read_text())
    assert scored["checkpoint"] == str(run / "best.pt") and scored["selected_on"] == "val"
    early = tmp_path / "early"  # a run stopped before its first validation has no best.pt
    shutil.copytree(run, early)
    (early / "best.pt").unlink()
    evaluated = invoke("evaluate", "--checkpoint", early, "--device", "cpu", "--json", tmp_path / "b.json")
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{early} has no best.pt yet (no validation has run); using its last.pt" in evaluated.output
    assert json.loads((tmp_path / "b.json").read_text())["checkpoint"] == str(early / "last.pt")
    drawn = invoke("visualize", "--split", "val", "--num", 1, "--checkpoint", early, "--out", tmp_path / "v")
    assert drawn.exit_code == 0 and "using its last.pt" in drawn.output, drawn.output
    for command in ("evaluate", "export", "visualize-boundaries"):
        assert "or a run folder (its best.pt; its last.pt, with a note, before the first validation)" in help_text(command)
    assert "Continue a run: its folder (its last.pt), or a last.pt / iter_000500.pt file" in help_text("train")


def test_init_from_starts_a_new_run_from_the_weights(run, tmp_path):
    result = invoke("train", "--init-from", run, *sets(tmp_path, 1), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (new_dir,) = (tmp_path / "runs" / "toy").iterdir()
    assert new_dir != run and "re-initialised" not in result.output and "start fresh" not in result.output
    assert torch.load(new_dir / "last.pt", weights_only=True)["iteration"] == 1  # a new schedule


def test_init_from_with_other_classes_reinitialises_the_classifier(run, tmp_path):
    payload = torch.load(run / "best.pt", weights_only=True)
    payload["dataset"]["classes"] = payload["dataset"]["classes"][:5]
    payload["dataset"]["palette"] = payload["dataset"]["palette"][:5]
    payload["model"] = {k: v[:5] if k.startswith("head.classifier") else v for k, v in payload["model"].items()}
    payload["config"]["contrast"]["method"] = "pixel-contrast"
    torch.save(payload, tmp_path / "five.pt")
    result = invoke("train", "--init-from", tmp_path / "five.pt", "--preset", "toy", *sets(tmp_path, 1))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--init-from: 5 classes in five.pt, 8 here: re-initialised head.classifier.bias, head.classifier.weight" in text
    assert "projection heads start fresh (five.pt was trained with contrast.method pixel-contrast" in text
    payload["model"]["backbone.body.conv1.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "other.pt")
    one_line_error(invoke("train", "--init-from", tmp_path / "other.pt", "--preset", "toy", *sets(tmp_path, 1)), 2,
                   "use a checkpoint of the same network")


def test_evaluate_is_float32_unless_amp(run, monkeypatch):
    from contextrast_cli.runtime import device

    asked = []
    real = device.setup_runtime
    monkeypatch.setattr(device, "setup_runtime", lambda name, precision, *a, **k: asked.append(precision) or real(name, precision, *a, **k))
    assert invoke("evaluate", "--checkpoint", run, "--device", "cpu").exit_code == 0
    assert invoke("evaluate", "--checkpoint", run, "--device", "cpu", "--amp").exit_code == 0
    assert asked == ["fp32", "auto"]


def test_evaluate_split_picks_the_split(run, tmp_path):
    """--split evaluates another prepared split: here a copy of val with one image fewer."""
    data = tmp_path / "data"
    shutil.copytree(torch.load(run / "best.pt", weights_only=True)["config"]["data"]["root"], data)
    shutil.copytree(data / "val", data / "small")
    first = sorted((data / "small" / "images").iterdir())[0]
    first.unlink()
    (data / "small" / "labels" / f"{first.stem}.png").unlink()
    result = invoke("evaluate", "--checkpoint", run, "--data-root", data, "--split", "small", "--device", "cpu",
                    "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["split"] == "small" and metrics["num_images"] == 3
    one_line_error(invoke("evaluate", "--checkpoint", run, "--data-root", data, "--split", "nope"), 2,
                   "split 'nope' not found")


def test_evaluate_rejects_foreign_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "x.pt")
    one_line_error(invoke("evaluate", "--checkpoint", tmp_path / "x.pt"), 2, "not a contextrast checkpoint")
    one_line_error(invoke("evaluate", "--checkpoint", tmp_path / "missing.pt"), 2, "does not exist")


def test_library_errors_are_domain_exceptions(run, tmp_path):
    """What the CLI turns into one line is raised as a typed exception by the library."""
    from contextrast_cli.evaluation.evaluator import evaluate_checkpoint
    from contextrast_cli.train.resume import load_resumable

    with pytest.raises(CheckpointError, match="weights only"):
        load_resumable(run / "best.pt")
    with pytest.raises(DataError, match="prepare-data synthetic"):
        evaluate_checkpoint(run / "best.pt", data_root=tmp_path / "none", device="cpu")


def test_real_camvid_prepare_train_evaluate(camvid_source, tmp_path):
    data = tmp_path / "camvid"
    assert invoke("prepare-data", "camvid", "--source", camvid_source, "--out", data).exit_code == 0
    trained = invoke("train", "--preset", "camvid", "--data-root", data, "--set", "model.pretrained=false",
                     "--set", "model.name=deeplabv3", "--set", "model.backbone=resnet18",
                     "--set", "model.output_stride=32", "--set", "data.crop_size=[96, 128]",
                     "--set", "data.workers=0", "--set", "train.device=cpu", "--runs-dir", tmp_path / "runs",
                     "--set", "eval.split=val", "--set", "eval.scales=[1.0]", "--set", "eval.flip=false",
                     "--iterations", 2, "--batch-size", 2)
    assert trained.exit_code == 0, trained.output
    (best,) = (tmp_path / "runs" / "camvid").glob("*/best.pt")
    evaluated = invoke("evaluate", "--checkpoint", best, "--json", tmp_path / "m.json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    classes = torch.load(best, weights_only=True)["dataset"]["classes"]
    assert metrics["num_images"] == 101 and set(metrics["IoU"]) == set(classes)
    # the exported graph scores the same on real CamVid val (within 0.05 mIoU points)
    exported = invoke("export", "--checkpoint", best, "--out", tmp_path / "camvid.onnx")
    assert exported.exit_code == 0, exported.output
    onnx_eval = invoke("evaluate", "--onnx", tmp_path / "camvid.onnx", "--data-root", data,
                       "--json", tmp_path / "o.json")
    assert onnx_eval.exit_code == 0, onnx_eval.output
    onnx_metrics = json.loads((tmp_path / "o.json").read_text())
    assert onnx_metrics["num_images"] == 101
    assert abs(onnx_metrics["mIoU"] - metrics["mIoU"]) * 100 <= 0.05
