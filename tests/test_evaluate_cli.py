"""``contextrast evaluate``'s protocol options, read back from the files it writes."""

import json

import cv2
import numpy as np
import pytest
import torch

from contextrast_cli.evaluation.metrics import confusion_matrix, confusion_scores
from tests.conftest import invoke, one_line_error, tiny_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    sets = [a for o in tiny_overrides(root, 2) for a in ("--set", o)]
    trained = invoke("train", "--preset", "toy", *sets)
    assert trained.exit_code == 0, trained.output
    (run_dir,) = (root / "runs" / "toy").iterdir()
    return run_dir


def evaluate(run, tmp_path, name, *options):
    path = tmp_path / f"{name}.json"
    result = invoke("evaluate", "--checkpoint", run, "--device", "cpu", "--json", path, *options)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


def test_slide_with_one_window_equals_whole(run, tmp_path):
    whole, _ = evaluate(run, tmp_path, "whole")
    one, _ = evaluate(run, tmp_path, "one", "--mode", "slide", "--crop", "32x48")  # the val images' size
    windows, _ = evaluate(run, tmp_path, "windows", "--mode", "slide", "--crop", "16x24", "--stride", "8x12")
    assert one["IoU"] == whole["IoU"] and one["boundary"] == whole["boundary"]
    assert (windows["eval"]["mode"], windows["eval"]["crop"], windows["eval"]["stride"]) == ("slide", [16, 24], [8, 12])
    defined = [v for v in windows["IoU"].values() if v is not None]
    assert windows["mIoU"] == pytest.approx(sum(defined) / len(defined), abs=1e-6)


def test_scales_flip_and_no_boundary_are_recorded(run, tmp_path):
    metrics, output = evaluate(run, tmp_path, "ms", "--scales", "0.75,1.0,1.25", "--flip", "--no-boundary")
    assert metrics["eval"]["scales"] == [0.75, 1.0, 1.25] and metrics["eval"]["flip"] is True
    assert "boundary" not in metrics and "boundary IoU" not in output
    assert "scales 0.75,1.0,1.25 + flip" in " ".join(output.split())


def test_saved_predictions_reproduce_the_reported_metrics(run, tmp_path):
    out = tmp_path / "preds"
    metrics, _ = evaluate(run, tmp_path, "saved", "--save-predictions", out)
    data_root = run.parent.parent.parent / "synthetic"
    dataset = json.loads((data_root / "dataset.json").read_text())
    labels = sorted((data_root / "val" / "labels").glob("*.png"))
    assert sorted(p.name for p in (out / "labels").iterdir()) == [p.name for p in labels]
    conf = 0
    palette = np.array(dataset["palette"], np.uint8)
    for path in labels:
        pred = cv2.imread(str(out / "labels" / path.name), cv2.IMREAD_UNCHANGED)
        colour = cv2.cvtColor(cv2.imread(str(out / "colour" / path.name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(colour, palette[pred])
        truth = torch.from_numpy(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        conf = conf + confusion_matrix(torch.from_numpy(pred), truth, len(dataset["classes"]))
    assert confusion_scores(conf, tuple(dataset["classes"]))["IoU"] == metrics["IoU"]
    assert not list(out.rglob(".*.tmp"))  # written through temporary names, none left behind


def test_features_reports_both_spaces_for_a_contrastive_checkpoint(run, tmp_path):
    metrics, output = evaluate(run, tmp_path, "features", "--features")
    spaces = metrics["features"]
    assert set(spaces) == {"layers", "embeddings"}
    assert set(spaces["layers"]) == {"1", "2", "3", "4"}
    assert all(0 < v["A"] <= 2 and 0 < v["U"] <= 2 for s in spaces.values() for v in s.values())
    assert "projection heads" in output and "U / A" in output


def test_bad_protocol_options_are_one_line(run):
    one_line_error(invoke("evaluate", "--checkpoint", run, "--mode", "tiles"), 2, "--mode: eval.mode")
    one_line_error(invoke("evaluate", "--onnx", run / "x.onnx", "--features"), 2, "--features")
    one_line_error(invoke("evaluate", "--checkpoint", run, "--crop", "0x5"), 2, "--crop: expected HxW")
    one_line_error(invoke("evaluate", "--checkpoint", run, "--scales", "1,big"), 2, "--scales: expected a comma")


def test_a_split_without_labelled_pixels_is_one_line(tmp_path):
    """Every val label is ignore (255): mIoU would be undefined. Training stops at its first
    validation with one line naming the split, not an internal error."""
    from contextrast_cli.config import resolve_config
    from contextrast_cli.data.locate import locate_dataset

    overrides = tiny_overrides(tmp_path)
    dataset = locate_dataset(resolve_config(preset="toy", overrides=overrides).data)  # generate the scenes
    for label in (dataset.root / "val" / "labels").glob("*.png"):
        cv2.imwrite(str(label), np.full_like(cv2.imread(str(label), cv2.IMREAD_UNCHANGED), 255))
    result = invoke("train", "--preset", "toy", *[a for o in overrides for a in ("--set", o)])
    one_line_error(result, 2, "split 'val' has no labelled pixels", after_progress=True)


def test_a_checkpoint_without_boundary_metrics_keeps_them_off(run, tmp_path):
    """eval.boundary: false in the checkpoint's config is kept unless --boundary is given (the flag
    used to default to on and override it)."""
    from contextrast_cli.models.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(run / "best.pt")
    payload["config"]["eval"]["boundary"] = False
    save_checkpoint(tmp_path / "no-boundary.pt", payload)
    plain, _ = evaluate(tmp_path / "no-boundary.pt", tmp_path, "plain")
    asked, _ = evaluate(tmp_path / "no-boundary.pt", tmp_path, "asked", "--boundary")
    assert "boundary" not in plain and plain["eval"]["boundary"] is False
    assert asked["boundary"]["mBIoU"] is not None


def test_checkpoint_only_options_with_onnx_say_they_do_not_apply(run, tmp_path):
    onnx = tmp_path / "m.onnx"
    assert invoke("export", "--checkpoint", run, "--out", onnx).exit_code == 0
    data = run.parent.parent.parent / "synthetic"
    result = invoke("evaluate", "--onnx", onnx, "--data-root", data, "--amp", "--device", "cpu", "--no-boundary")
    assert result.exit_code == 0, result.output
    assert "note: --amp and --device apply to checkpoints" in " ".join(result.output.split())


def test_scoring_best_pt_on_its_selection_split_says_so(run, tmp_path):
    best, best_out = evaluate(run / "best.pt", tmp_path, "best")
    last, last_out = evaluate(run / "last.pt", tmp_path, "last")
    assert best["selected_on"] == "val" and "selected_on" not in last
    assert "note: this best.pt was chosen by its val mIoU" in " ".join(best_out.split())
    assert "note:" not in last_out


def label_pixel_counts(data_root, num_classes: int) -> list[int]:
    """Ground-truth pixels of each class over the val label PNGs, counted here (ignore left out)."""
    counts = np.zeros(num_classes, np.int64)
    for path in sorted((data_root / "val" / "labels").glob("*.png")):
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        for c in range(num_classes):
            counts[c] += int((label == c).sum())
    return counts.tolist()


def test_json_has_the_confusion_matrix_with_ground_truth_rows(run, tmp_path):
    metrics, _ = evaluate(run, tmp_path, "confusion")
    confusion = metrics["confusion"]
    assert (confusion["rows"], confusion["columns"]) == ("ground truth", "prediction")
    assert confusion["classes"] == list(metrics["IoU"])
    matrix = np.array(confusion["matrix"])
    data_root = run.parent.parent.parent / "synthetic"
    assert matrix.sum(1).tolist() == label_pixel_counts(data_root, len(matrix))
    # IoU of each class from the counts, by hand: diagonal / (row + column - diagonal)
    for c, name in enumerate(confusion["classes"]):
        union = matrix[c].sum() + matrix[:, c].sum() - matrix[c, c]
        assert metrics["IoU"][name] == (None if union == 0 else round(matrix[c, c] / union, 6))


def test_report_writes_the_per_class_table_and_the_confusion_figure(run, tmp_path):
    import csv

    metrics, output = evaluate(run, tmp_path, "report", "--report", tmp_path / "report")
    with (tmp_path / "report" / "per_class.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["class", "IoU", "Acc", "boundary IoU", "boundary F", "pixel share"]
    number = lambda text: None if text == "" else float(text)  # noqa: E731
    matrix = np.array(metrics["confusion"]["matrix"])
    assert [r["class"] for r in rows] == list(metrics["IoU"])
    for c, row in enumerate(rows):
        name = row["class"]
        assert number(row["IoU"]) == metrics["IoU"][name] and number(row["Acc"]) == metrics["Acc"][name]
        assert number(row["boundary IoU"]) == metrics["boundary"]["BIoU"][name]
        assert number(row["boundary F"]) == metrics["boundary"]["BF"][name]
        assert number(row["pixel share"]) == round(matrix[c].sum() / matrix.sum(), 6)
    figure = cv2.imread(str(tmp_path / "report" / "confusion.png"))
    assert figure is not None and 450 <= figure.shape[0] <= 700 and 550 <= figure.shape[1] <= 850  # 8 classes
    assert figure.std() > 0
    said = output.replace("\n", "")  # rich wraps long paths
    assert f"{tmp_path / 'report'}/per_class.csv, {tmp_path / 'report'}/confusion.png" in said
    assert not list((tmp_path / "report").glob(".*"))  # written through temporary names


def test_report_into_a_file_is_one_line_before_evaluating(run, tmp_path):
    (tmp_path / "taken").write_text("x")
    one_line_error(invoke("evaluate", "--checkpoint", run, "--report", tmp_path / "taken"), 2,
                   "--report " + str(tmp_path / "taken") + ": a file, not a folder")
