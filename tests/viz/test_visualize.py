"""visualize-boundaries: the drawn markers are BANE's own picks; PNGs, options and bad inputs."""

import copy
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from contextrast_cli.viz import bane_view as bane
from contextrast_cli.viz import boundaries as visualize
from contextrast_cli import viz
from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.grids import resize_labels
from contextrast_cli.models.checkpoint import config_from_checkpoint, load_checkpoint, model_from_checkpoint
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.models.registry import build_model
from tests.conftest import invoke, tiny_overrides
from tests.models.small import SMALL_MODELS

PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # none is white or the top-up grey


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step Contextrast run on tiny synthetic scenes: (run folder, a val image, its label)."""
    root = tmp_path_factory.mktemp("vis")
    cfg = resolve_config("toy", overrides=tiny_overrides(root, 2) + ["contrast.method=contextrast"])
    run_dir = Trainer(cfg).run().run_dir
    images = root / "synthetic" / "val" / "images"
    image = sorted(images.iterdir())[0]
    return run_dir, image, images.parent / "labels" / f"{image.stem}.png"


def blown_up(case, cell: int = 8):
    """The BANE fixture's 10x12 layer blown up to an image of ``cell``-pixel cells, so the
    layer grid is known exactly."""
    return tuple(t.repeat_interleave(cell, 0).repeat_interleave(cell, 1) for t in case)


def test_constructed_case_marks_exactly_the_pixels_bane_must_pick(bane_case):
    pred, label = blown_up(bane_case)
    (view,) = bane.bane_view(pred, label, {1: (10, 12)}, num_classes=3, max_negatives=20, ratio=0.62)
    ring = {(y, x) for y in range(2, 7) for x in range(2, 7) if y in (2, 6) or x in (2, 6)}
    strip = {(8 * 6 + 4, 8 * 8 + 4, 2), (8 * 7 + 4, 8 * 8 + 4, 2)}  # the first two of the 1x3 strip
    expected = {(8 * x + 4, 8 * y + 4, 1) for y, x in ring} | strip
    got = {(x, y, c) for (x, y), c in zip(view.bane_points.tolist(), view.bane_classes.tolist())}
    assert got == expected
    assert view.bane_counts.tolist() == [0, 16, 2]
    # top-up: anchors 1 and 2 fill their room (20 - picks); anchor 0's only other-class pixels are the
    # 3 of the class-2 strip, as many of them as the random pool (80 of the 120 pixels) holds
    strip_in_pool = int((bane_case[1].reshape(-1)[view.selection.pool] == 2).sum())
    assert view.topup_counts.tolist() == [strip_in_pool, 4, 18]
    # read the dots back from the drawing: one blob per pick, centred on its cell, in its anchor's colour
    panel = viz.negatives_panel(np.zeros((80, 96, 3), np.uint8), view, viz.colour_table(PALETTE))
    drawn = set()
    for anchor, colour in enumerate(PALETTE):
        mask = np.all(panel == colour, axis=2).astype(np.uint8)
        count, _, _, centroids = cv2.connectedComponentsWithStats(mask)
        drawn |= {(int(round(x)), int(round(y)), anchor) for x, y in centroids[1:]}
        assert np.allclose(centroids[1:], np.round(centroids[1:]))
    assert drawn == expected


def independent_selection(model, image, label, payload):
    """BANE picks per layer as METHOD.md defines them, computed here without the project's sampling
    code: train-mode features' sizes, labels and prediction resized by nearest neighbour, per class
    n the error region E^n, OpenCV's exact distance transform, the ceil(ratio * |E^n|) pixels
    nearest its boundary (ties in raster order), at most max_negatives. Returns, per layer, the
    picks as (x, y, anchor) cell centres, and the labelled cells (the only candidates for top-up)."""
    contrast = config_from_checkpoint(payload).contrast
    x = (torch.from_numpy(image).permute(2, 0, 1).float() / 255)[None]
    with torch.no_grad():  # the taps the loss sees (B = 1 ASPP cannot train)
        features = copy.deepcopy(model.backbone).train()(model.normalize(x))
        pred = model(x)["out"].argmax(1)  # (1, H, W): the eval-mode prediction the figure shows
    target, num_classes = torch.from_numpy(label.astype(np.int64))[None], len(payload["dataset"]["classes"])
    picks, candidates = {}, {}
    for layer in contrast.layers:
        labels = resize_labels(target, features[layer - 1].shape[-2:])[0].numpy()
        small = resize_labels(pred, labels.shape)[0].numpy()
        (h, w), (H, W) = labels.shape, image.shape[:2]
        centre = lambda y, x: (int((x + 0.5) * W / w), int((y + 0.5) * H / h))  # noqa: E731
        picks[layer] = set()
        for n in range(num_classes):
            error = (small == n) & (labels != n) & (labels != 255)
            dist = cv2.distanceTransform(error.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            cells = sorted(zip(*np.nonzero(error)), key=lambda yx: (round(float(dist[yx]), 4), yx))
            keep = min(math.ceil(contrast.bane.ratio * len(cells)), contrast.max_negatives)
            picks[layer] |= {(*centre(y, x), n) for y, x in cells[:keep]}
        candidates[layer] = {centre(y, x) for y, x in zip(*np.nonzero(labels != 255))}
    return picks, candidates


def test_real_model_markers_are_the_selection_of_the_loss(trained, monkeypatch, tmp_path):
    run_dir, image_path, label_path = trained
    captured = {}
    real_draw = visualize.draw_grid
    monkeypatch.setattr(visualize, "draw_grid", lambda *a: captured.setdefault("args", a) and real_draw(*a))
    visualize.visualize_images([image_path], [run_dir / "best.pt"], out_dir=tmp_path, device="cpu")
    image, pred, label, views, meta, _ = captured["args"]
    payload = load_checkpoint(run_dir / "best.pt")
    expected, candidates = independent_selection(model_from_checkpoint(payload), image, label, payload)
    assert [v.layer for v in views] == [1, 2, 3, 4]
    assert sum(len(p) for p in expected.values()) > 0  # an untrained model gets plenty wrong
    for view in views:
        got = {(x, y, c) for (x, y), c in zip(view.bane_points.tolist(), view.bane_classes.tolist())}
        assert got == expected[view.layer]
        topup = set(map(tuple, view.topup_points.tolist()))
        assert topup and topup <= candidates[view.layer]  # random top-up: labelled cells only
        # a BANE negative is pushed away from the class it is wrongly predicted as
        h, w = view.selection.maps.pred.shape[-2:]
        flat = view.selection.maps.pred.reshape(-1)
        for (x, y), anchor in zip(view.bane_points.tolist(), view.bane_classes.tolist()):
            assert int(flat[int(y / view.cell[0]) * w + int(x / view.cell[1])]) == anchor


def test_grid_overlay_alias_and_files(trained, tmp_path):
    run_dir, image_path, _ = trained
    grid = invoke("visualize-boundaries", image_path, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "a",
                  "--device", "cpu")
    assert grid.exit_code == 0, grid.output
    assert "BANE needs ground truth" not in grid.output  # a prepared dataset's image finds its label
    png = cv2.imread(str(tmp_path / "a" / f"{image_path.stem}.png"))
    zoom = viz.MIN_PANEL_WIDTH // 48
    assert png.shape[1] == 4 * 48 * zoom + 3 * 4 and png.shape[0] > 3 * 32 * zoom  # 4 columns, 3 panel rows
    alias = invoke("visualize", image_path, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "b",
                   "--device", "cpu")
    assert alias.exit_code == 0
    name = f"{image_path.stem}.png"
    assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    overlay = invoke("visualize", image_path, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "a",
                     "--style", "overlay", "--layers", "2,4", "--ratio", "0.3")
    assert overlay.exit_code == 0, overlay.output
    small = cv2.imread(str(tmp_path / "a" / f"{image_path.stem}_overlay.png"))
    assert small.shape[1] == 48 * zoom and small.shape[0] > 32 * zoom
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{image_path.stem}.png",
                                                                   f"{image_path.stem}_overlay.png"]


def test_split_default_checkpoint_and_no_label(trained, tmp_path):
    run_dir, image_path, _ = trained
    split = invoke("visualize-boundaries", "--split", "val", "--num", "2", "--runs-dir", run_dir.parent.parent,
                   "--out", tmp_path / "s", "--device", "cpu")
    assert split.exit_code == 0, split.output
    assert f"using {run_dir / 'best.pt'}" in split.output and len(list((tmp_path / "s").iterdir())) == 2
    lone = tmp_path / "lone.png"
    shutil.copyfile(image_path, lone)
    bare = invoke("visualize-boundaries", lone, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "n")
    assert bare.exit_code == 0
    notes = [line for line in bare.output.splitlines() if "BANE needs ground truth" in line]
    assert len(notes) == 1 and str(lone) in notes[0]
    assert cv2.imread(str(tmp_path / "n" / "lone.png")) is not None


def test_checkpoints_one_row_each(trained, tmp_path):
    run_dir, image_path, _ = trained
    best, last = run_dir / "best.pt", run_dir / "last.pt"
    two = invoke("visualize-boundaries", image_path, "--checkpoints", best, last, "--out", tmp_path / "2")
    three = invoke("visualize-boundaries", image_path, "--checkpoints", best, "--checkpoints", last,
                   "--checkpoints", best, "--out", tmp_path / "3")
    assert two.exit_code == 0 and three.exit_code == 0, two.output + three.output
    name = f"{image_path.stem}_checkpoints.png"
    height2 = cv2.imread(str(tmp_path / "2" / name)).shape[0]
    height3 = cv2.imread(str(tmp_path / "3" / name)).shape[0]
    zoom = viz.MIN_PANEL_WIDTH // 48
    assert height2 > 2 * 32 * zoom and height3 > height2


def test_rows_of_two_runs_at_one_iteration_say_which_run_and_method(trained, tmp_path, monkeypatch):
    from contextrast_cli.viz import figures

    run_dir, image_path, _ = trained
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=none"])
    ce_dir = Trainer(cfg).run().run_dir
    headers = []
    original = figures.compose
    monkeypatch.setattr(figures, "compose", lambda rows, heads=None, **kw: headers.extend(heads or []) or
                        original(rows, heads, **kw))
    result = invoke("visualize-boundaries", image_path, "--checkpoints", ce_dir / "last.pt", run_dir / "last.pt",
                    "--out", tmp_path / "rows")
    assert result.exit_code == 0, result.output
    assert headers[0].startswith(f"toy/{ce_dir.name}/last.pt (none), iteration 2")
    assert headers[1].startswith(f"toy/{run_dir.name}/last.pt (contextrast), iteration 2")


def capture_compose(monkeypatch) -> list[dict]:
    """Every ``figures.compose`` call's row headers and legend lines, as the figure is drawn."""
    from contextrast_cli.viz import figures

    calls, original = [], figures.compose
    monkeypatch.setattr(figures, "compose", lambda rows, heads=None, **kw: calls.append(
        {"headers": heads or [], "lines": kw["footer"][0]}) or original(rows, heads, **kw))
    return calls


def test_rows_of_two_files_of_one_run_at_one_iteration_name_the_file(trained, tmp_path, monkeypatch):
    """Issue 37: `--checkpoints iter_000002.pt RUN` gave two rows both titled "iteration 2"."""
    run_dir, image_path, _ = trained
    calls = capture_compose(monkeypatch)
    result = invoke("visualize-boundaries", image_path, "--checkpoints", run_dir / "iter_000002.pt", run_dir,
                    "-o", tmp_path / "rows", "--device", "cpu")
    assert result.exit_code == 0, result.output
    first, second = calls[0]["headers"]
    assert first.startswith(f"toy/{run_dir.name}/iter_000002.pt (contextrast), iteration 2"), first
    assert second.startswith(f"toy/{run_dir.name}/best.pt (contextrast), iteration 2"), second


def test_the_legend_names_only_what_the_panels_draw(trained, tmp_path, monkeypatch):
    """Issue 37: overlay rows promised grey crosses and white outlines, which only the grid draws."""
    run_dir, image_path, _ = trained
    calls = capture_compose(monkeypatch)
    for style in ("overlay", "grid"):
        result = invoke("visualize-boundaries", image_path, "--checkpoints", run_dir / "last.pt", run_dir / "best.pt",
                        "--style", style, "-o", tmp_path / style, "--device", "cpu")
        assert result.exit_code == 0, result.output
    result = invoke("visualize-boundaries", image_path, "--checkpoint", run_dir, "--style", "overlay",
                    "-o", tmp_path / "one", "--device", "cpu")
    assert result.exit_code == 0, result.output
    overlay_rows, grid_rows, overlay_one = (" ".join(call["lines"]) for call in calls)
    for text in (overlay_rows, overlay_one):
        assert "grey" not in text and "white" not in text and "top-up not drawn" in text, text
    assert "grey x" in grid_rows and "white: error outline" in grid_rows


def test_no_arguments_is_one_usage_line(trained, tmp_path, monkeypatch):
    """Issue 37: it printed a note about the checkpoint taken, then "nothing to draw"."""
    run_dir, _, _ = trained
    monkeypatch.chdir(run_dir.parent.parent.parent)  # runs/ holds a best.pt: the note it used to print
    result = invoke("visualize-boundaries")
    assert result.exit_code == 2 and "note:" not in result.output, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: nothing to draw") and "contextrast visualize-boundaries IMAGE.png" in line


def test_set_changes_the_bane_settings_drawn_and_nothing_else(trained, tmp_path, monkeypatch):
    run_dir, image_path, _ = trained
    calls = capture_compose(monkeypatch)
    result = invoke("visualize-boundaries", image_path, "--checkpoint", run_dir, "--set", "contrast.bane.ratio=0.25",
                    "-o", tmp_path / "s", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "BANE ratio 0.25 of each error region" in " ".join(calls[0]["lines"])
    refused = invoke("visualize-boundaries", image_path, "--checkpoint", run_dir, "--set", "model.name=hrnet")
    assert refused.exit_code == 2 and "--set applies to contrast.bane" in refused.output, refused.output


@pytest.mark.parametrize("case, message", [
    ("missing image", "cannot read image (no such file)"),
    ("garbage image", "cannot read image (not an image OpenCV can decode)"),
    ("label size", "label is 10x12 but image"),
    ("label values", "label values [9, 20] are not classes of the checkpoint (0..7, 255 = ignore)"),
    ("missing checkpoint", "does not exist"),
    ("two images one label", "--label applies to a single IMAGE"),
    ("bad layer", "--layers: [7] not tapped; the network taps layers 1..4"),
])
def test_bad_inputs_are_one_line(trained, tmp_path, case, message):
    run_dir, image_path, label_path = trained
    args = [image_path, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "o"]
    if case == "missing image":
        args[0] = tmp_path / "nowhere.png"
    elif case == "garbage image":
        args[0] = tmp_path / "garbage.png"
        args[0].write_text("not a png")
    elif case in ("label size", "label values"):
        label = np.zeros((10, 12) if case == "label size" else (32, 48), np.uint8)
        label[0, :2] = (9, 20) if case == "label values" else 0
        label[1, 0] = 255
        cv2.imwrite(str(tmp_path / "label.png"), label)
        args += ["--label", tmp_path / "label.png"]
    elif case == "missing checkpoint":
        args[2] = tmp_path / "nowhere.pt"
    elif case == "two images one label":
        args = [image_path, *args, "--label", label_path]
    else:
        args += ["--layers", "1,7"]
    result = invoke("visualize-boundaries", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_layer_sizes_are_the_sizes_the_loss_sees(name):
    """Padded networks (HRNet) included: the drawn layers have the training features' sizes."""
    model = build_model(SMALL_MODELS[name], 3).eval()
    image = np.random.default_rng(0).integers(0, 255, (45, 77, 3), dtype=np.uint8)
    _, sizes = bane.predict_with_sizes(model, image, torch.device("cpu"))
    with torch.no_grad():
        features = model.train()(torch.zeros(2, 3, 45, 77))["features"]  # batch 2: BN in training mode
    assert sizes == [tuple(f.shape[-2:]) for f in features]


def test_checkpoints_are_told_from_images_by_what_the_file_is(trained, tmp_path):
    """`--checkpoints A B`: Click hands B to IMAGE; a .pth checkpoint is still a checkpoint."""
    run_dir, image_path, _ = trained
    pth = tmp_path / "model.pth"
    shutil.copyfile(run_dir / "best.pt", pth)
    result = invoke("visualize-boundaries", image_path, "--checkpoints", run_dir / "last.pt", pth,
                    "--out", tmp_path / "o", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{image_path.stem}_checkpoints.png"]
    zoom = viz.MIN_PANEL_WIDTH // 48
    assert cv2.imread(str(tmp_path / "o" / f"{image_path.stem}_checkpoints.png")).shape[0] > 2 * 32 * zoom


def test_the_view_shows_the_picks_of_every_class_beyond_64():
    """70 classes (the old loss kept anchors for 64): anchors 66 and 69 get their BANE picks drawn."""
    label = torch.full((20, 24), 66, dtype=torch.long)
    label[:, 12:] = 69
    pred = label.clone()
    pred[4:10, 8:12] = 69  # 69 over 66: E^69
    pred[12:16, 12:18] = 66  # 66 over 69: E^66
    (view,) = bane.bane_view(pred, label, {1: (20, 24)}, num_classes=70, max_negatives=50, ratio=0.5)
    assert set(view.bane_classes.tolist()) == {66, 69}
    assert view.bane_counts[66] == 12 and view.bane_counts[69] == 12  # ceil(0.5 * 24) each


def test_a_contextrast_plus_plus_run_is_drawn(tmp_path):
    """Issue 34: a ++ checkpoint (fusion modules and a memory bank in its loss state) draws as any."""
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=contextrast++"])
    run_dir = Trainer(cfg).run().run_dir
    image = sorted((tmp_path / "synthetic" / "val" / "images").iterdir())[0]
    result = invoke("visualize", image, "--checkpoint", run_dir / "last.pt", "--out", tmp_path / "v", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "v" / f"{image.stem}.png")) is not None
