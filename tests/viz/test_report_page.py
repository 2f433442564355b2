"""``report.html`` of ``evaluate --report`` and ``analyze``, opened from disk in headless Chromium:
no console error, every image decoded, the tables hold the JSON's numbers, a header click sorts,
no network request; readable on a phone and printable."""

import csv
import json

import pytest

from contextrast_cli.config import resolve_config
from contextrast_cli.train.trainer import Trainer
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.viz.browser import Visit, chromium

SMALL = ["--tsne-pixels", "40", "--gradcam-images", "1", "--bane-images", "1"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A 2-step Contextrast run on tiny scenes, its ``evaluate --report --json`` and its ``analyze``."""
    root = tmp_path_factory.mktemp("page")
    run_dir = Trainer(resolve_config("toy", overrides=tiny_overrides(root, 2))).run().run_dir
    done = invoke("evaluate", "--checkpoint", run_dir, "--report", root / "evaluation", "--json",
                  root / "evaluation.json")
    assert done.exit_code == 0, done.output
    done = invoke("analyze", run_dir, "-o", root / "analysis", *SMALL)
    assert done.exit_code == 0, done.output
    return root


def ordered(values: list, reverse: bool = False) -> list[int]:
    return sorted(range(len(values)), key=lambda i: values[i], reverse=reverse)


def test_the_evaluation_page_in_a_browser(pages):
    metrics = json.loads((pages / "evaluation.json").read_text())
    report = pages / "evaluation" / "report.html"
    with chromium() as browser:
        visit = Visit(browser, report)
        widths = visit.images()
        assert len(widths) >= 3 and min(widths) > 0  # confusion, curves, BANE view
        classes = list(metrics["IoU"])
        assert visit.column("per-class", 0, attr=False) == classes
        assert [None if v == "" else float(v) for v in visit.column("per-class", 1)] == list(metrics["IoU"].values())
        assert float(visit.column("summary", 1)[0]) == metrics["mIoU"]
        share = [float(v) for v in visit.column("per-class", 5)]
        visit.page.click("#per-class thead th:nth-child(6)")  # pixel share: every class differs
        assert visit.column("per-class", 0, attr=False) == [classes[i] for i in ordered(share)]
        visit.page.click("#per-class thead th:nth-child(6)")
        assert visit.column("per-class", 0, attr=False) == [classes[i] for i in ordered(share, reverse=True)]
        assert visit.errors == []
        assert visit.foreign_requests(report) == []
        assert "contextrast evaluate --checkpoint" in visit.page.inner_text("pre")


def test_the_analysis_page_in_a_browser(pages):
    numbers = json.loads((pages / "analysis" / "analysis.json").read_text())
    report = pages / "analysis" / "report.html"
    with chromium() as browser:
        visit = Visit(browser, report)
        assert min(visit.images()) > 0 and len(visit.images()) >= 6  # + similarity, Grad-CAM, t-SNE
        groups = numbers["groups"]["IoU"]
        assert visit.column("groups", 0, attr=False) == list(groups)
        assert [float(v) for v in visit.column("groups", 2)] == list(groups.values())
        sizes = numbers["sizes"]["buckets"]
        assert [int(v) for v in visit.column("sizes", 1)] == [b["regions"] for b in sizes.values()]
        assert [None if v == "" else float(v) for v in visit.column("sizes", 3)] == [b["mIoU"] for b in sizes.values()]
        assert [float(v) for v in visit.column("bands", 1)] == [b["mBIoU"] for b in numbers["bands"].values()]
        pixels = [int(v) for v in visit.column("analysis-per-class", 2)]
        classes = visit.column("analysis-per-class", 0, attr=False)
        assert pixels == [numbers["groups"]["train_pixels"][c] for c in classes]
        visit.page.click("#analysis-per-class thead th:nth-child(3)")
        assert visit.column("analysis-per-class", 0, attr=False) == [classes[i] for i in ordered(pixels)]
        assert visit.errors == [] and visit.foreign_requests(report) == []
        visit.page.set_viewport_size({"width": 375, "height": 800})  # a phone: nothing wider than the screen
        assert visit.page.evaluate("document.documentElement.scrollWidth") <= 375
        visit.page.emulate_media(media="print")
        assert visit.page.eval_on_selector("nav", "n => getComputedStyle(n).display") == "none"


def test_analyze_writes_the_groups_and_refuses_bad_thresholds(pages, tmp_path):
    numbers = json.loads((pages / "analysis" / "analysis.json").read_text())
    with (pages / "analysis" / "groups.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["class"]: r["group"] for r in rows} == {c: g for g, members in numbers["groups"]["classes"].items()
                                                      for c in members}
    assert {r["class"]: int(r["train pixels"]) for r in rows} == numbers["groups"]["train_pixels"]
    assert numbers["groups"]["note"] is None  # the synthetic generator recorded its class pixels
    metrics = json.loads((pages / "evaluation.json").read_text())  # the same checkpoint, evaluated alone
    assert numbers["confusion"] == metrics["confusion"] and numbers["boundary"] == metrics["boundary"]
    run = json.loads((pages / "analysis" / "analysis.json").read_text())["checkpoint"]
    one_line_error(invoke("analyze", run, "--size-thresholds", "32,16"), 2, "--size-thresholds")
    one_line_error(invoke("analyze", tmp_path / "nothing.pt"), 2, "does not exist")


def test_an_onnx_evaluation_page_has_no_checkpoint_parts(pages, tmp_path):
    """``evaluate --onnx --report``: the graph's checkpoint may be on another machine; the page
    names the graph and leaves out the curves, BANE views and config it cannot rebuild."""
    from contextrast_cli.experiments.pages import write_evaluation_page

    metrics = json.loads((pages / "evaluation.json").read_text())
    metrics.update(onnx=str(tmp_path / "best.onnx"), checkpoint="/elsewhere/best.pt")
    html = write_evaluation_page(metrics, tmp_path, "contextrast evaluate --onnx best.onnx").read_text()
    assert "ONNX graph" in html and "BANE views" not in html and "Training curves" not in html
