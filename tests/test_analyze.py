"""``contextrast analyze`` over an ablation folder: the tables and the page, resumed after an
interruption; and ``ablate`` extended with a method on the same folder trains only the new runs."""

import json
import statistics

import pytest

from contextrast_cli.evaluation.analyses import run as analyses_run
from tests.conftest import invoke, tiny_overrides
from tests.viz.browser import Visit, chromium

SMALL = ["--tsne-pixels", "24", "--gradcam-images", "1", "--bane-images", "1"]
RUNS = ["none-seed0", "contextrast-seed0", "none-seed1", "contextrast-seed1"]


def ablate(root, methods: str):
    sets = [a for o in tiny_overrides(root, 2) for a in ("--set", o)]
    return invoke("ablate", "--preset", "toy", "--methods", methods, "--seeds", "0,1", "--out", root / "abl",
                  "--no-features", *sets)


def stamps(folder, names, file):
    return {name: (folder / name / file).stat().st_mtime_ns for name in names}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """An ablation of none and contextrast (2 seeds, 2 iterations); ``analyze`` interrupted at its
    third run, then run again; the ablation extended with pixel-contrast; ``analyze`` again. What
    each step said and left behind."""
    root = tmp_path_factory.mktemp("analyze")
    folder, out = root / "abl", root / "abl" / "analysis"
    said = {"ablate": ablate(root, "none,contextrast")}
    calls, original = [], analyses_run.analyze_checkpoint

    def interrupted_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analyses_run, "analyze_checkpoint", interrupted_third)
        said["interrupted"] = invoke("analyze", folder, *SMALL)
    done = [name for name in RUNS if (out / name / "analysis.json").is_file()]
    facts = {"done": done, "kept": stamps(out, done, "analysis.json"), "page_early": (out / "report.html").exists()}
    said["resumed"] = invoke("analyze", folder, *SMALL)
    facts["after"] = stamps(out, done, "analysis.json")
    facts["summary"] = json.loads((out / "analysis.json").read_text())
    facts["evaluated"] = stamps(folder, RUNS, "evaluation.json")
    said["extended"] = ablate(root, "none,contextrast,pixel-contrast")
    facts["evaluated_after"] = stamps(folder, RUNS, "evaluation.json")
    said["third"] = invoke("analyze", folder, *SMALL)
    return folder, out, said, facts


def test_analyze_resumes_an_interrupted_ablation_analysis(story):
    folder, out, said, facts = story
    assert said["ablate"].exit_code == 0 and (folder / "report.html").is_file()  # ablate's own page
    assert said["interrupted"].exit_code == 130, said["interrupted"].output
    assert facts["done"] == RUNS[:2] and not facts["page_early"]
    assert said["resumed"].exit_code == 0, said["resumed"].output
    assert facts["after"] == facts["kept"] and said["resumed"].output.count("same protocol; kept") == 2


def test_the_ablation_analysis_adds_up(story):
    _, out, _, facts = story
    summary = facts["summary"]
    runs = {name: json.loads((out / name / "analysis.json").read_text()) for name in RUNS}
    assert summary["variants"] == ["none", "contextrast"] and summary["split"] == "val"
    for key, get in (("head IoU", lambda r: r["groups"]["IoU"]["head"]),
                     ("boundary IoU 3px", lambda r: r["bands"]["3px"]["mBIoU"]),
                     ("mIoU, regions up to 16x16", lambda r: r["sizes"]["buckets"]["up to 16x16"]["mIoU"])):
        diffs = [get(runs[f"contextrast-seed{s}"]) - get(runs[f"none-seed{s}"]) for s in (0, 1)]
        assert summary["paired"]["contextrast"][key]["values"] == pytest.approx(diffs)
        assert summary["paired"]["contextrast"][key]["mean"] == pytest.approx(statistics.mean(diffs))
        values = [get(runs[f"none-seed{s}"]) for s in (0, 1)]
        assert summary["scores"]["none"][key]["mean"] == pytest.approx(statistics.mean(values))


def test_an_extended_ablation_trains_and_analyses_only_the_new_runs(story):
    folder, out, said, facts = story
    assert said["extended"].exit_code == 0, said["extended"].output
    trained = [line for line in said["extended"].output.splitlines() if "training 2 iterations" in line]
    assert len(trained) == 2 and all("pixel-contrast-seed" in line for line in trained)
    assert facts["evaluated_after"] == facts["evaluated"]
    assert json.loads((folder / "ablation.json").read_text())["variants"] == ["none", "contextrast", "pixel-contrast"]
    assert said["third"].exit_code == 0 and said["third"].output.count("same protocol; kept") == 4, said["third"].output
    summary = json.loads((out / "analysis.json").read_text())
    assert set(summary["paired"]) == {"contextrast", "pixel-contrast"}
    head = summary["paired"]["pixel-contrast"]["head IoU"]
    line = f"| pixel-contrast | head IoU | {head['values'][0] * 100:+.2f} | {head['values'][1] * 100:+.2f} |"
    assert line in (out / "analysis.md").read_text()


def test_the_ablation_analysis_page_in_a_browser(story):
    _, out, _, _ = story
    summary = json.loads((out / "analysis.json").read_text())
    report = out / "report.html"
    with chromium() as browser:
        visit = Visit(browser, report)
        assert min(visit.images()) > 0
        variants = visit.column("analysis-paired", 0, attr=False)
        scores = visit.column("analysis-paired", 1, attr=False)
        means = [float(v) for v in visit.column("analysis-paired", 4)]  # variant, score, seed 0, seed 1, mean
        assert means == [summary["paired"][v][k]["mean"] for v, k in zip(variants, scores)]
        assert visit.errors == [] and visit.foreign_requests(report) == []
