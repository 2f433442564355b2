"""``contextrast analyze`` over an ablation folder: the tables and the page, resumed after an
interruption; and ``ablate`` extended with a method on the same folder trains only the new runs."""

import json
import statistics

import pytest

from contextrast_cli.evaluation.analyses import run as analyses_run
from tests.conftest import invoke, tiny_overrides

SMALL = ["--tsne-pixels", "24", "--gradcam-images", "1", "--bane-images", "1"]
RUNS = ["none-seed0", "contextrast-seed0", "none-seed1", "contextrast-seed1"]


def ablate(tmp_path, methods: str):
    sets = [a for o in tiny_overrides(tmp_path, 2) for a in ("--set", o)]
    return invoke("ablate", "--preset", "toy", "--methods", methods, "--seeds", "0,1", "--out", tmp_path / "abl",
                  "--no-features", *sets)


def stamps(folder, names, file):
    return {name: (folder / name / file).stat().st_mtime_ns for name in names}


def test_analyze_an_ablation_resumes_and_an_extended_ablation_trains_only_the_new_runs(tmp_path, monkeypatch):
    assert ablate(tmp_path, "none,contextrast").exit_code == 0
    folder, out = tmp_path / "abl", tmp_path / "abl" / "analysis"
    assert (folder / "report.html").is_file()  # ablate's own page

    calls = []
    original = analyses_run.analyze_checkpoint

    def interrupted_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(analyses_run, "analyze_checkpoint", interrupted_third)
    first = invoke("analyze", folder, *SMALL)
    assert first.exit_code == 130, first.output
    done = [name for name in RUNS if (out / name / "analysis.json").is_file()]
    assert done == RUNS[:2] and not (out / "report.html").exists()
    kept = stamps(out, done, "analysis.json")
    monkeypatch.undo()

    second = invoke("analyze", folder, *SMALL)
    assert second.exit_code == 0, second.output
    assert stamps(out, done, "analysis.json") == kept and second.output.count("same protocol; kept") == 2
    runs = {name: json.loads((out / name / "analysis.json").read_text()) for name in RUNS}
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["variants"] == ["none", "contextrast"] and summary["split"] == "val"
    for key, get in (("head IoU", lambda r: r["groups"]["IoU"]["head"]),
                     ("boundary IoU 3px", lambda r: r["bands"]["3px"]["mBIoU"]),
                     ("mIoU, regions up to 16x16", lambda r: r["sizes"]["buckets"]["up to 16x16"]["mIoU"])):
        diffs = [get(runs[f"contextrast-seed{s}"]) - get(runs[f"none-seed{s}"]) for s in (0, 1)]
        assert summary["paired"]["contextrast"][key]["values"] == pytest.approx(diffs)
        assert summary["paired"]["contextrast"][key]["mean"] == pytest.approx(statistics.mean(diffs))
        values = [get(runs[f"none-seed{s}"]) for s in (0, 1)]
        assert summary["scores"]["none"][key]["mean"] == pytest.approx(statistics.mean(values))
    table = (out / "analysis.md").read_text()
    head = summary["paired"]["contextrast"]["head IoU"]
    assert f"| contextrast | head IoU | {head['values'][0] * 100:+.2f} | {head['values'][1] * 100:+.2f} |" in table
    html = (out / "report.html").read_text()
    assert 'id="analysis-paired"' in html and 'id="ablation-paired"' in html and "data:image/png;base64," in html

    evaluated = stamps(folder, RUNS, "evaluation.json")
    extended = ablate(tmp_path, "none,contextrast,pixel-contrast")
    assert extended.exit_code == 0, extended.output
    trained = [line for line in extended.output.splitlines() if "training 2 iterations" in line]
    assert len(trained) == 2 and all("pixel-contrast-seed" in line for line in trained)
    assert stamps(folder, RUNS, "evaluation.json") == evaluated
    assert json.loads((folder / "ablation.json").read_text())["variants"] == ["none", "contextrast", "pixel-contrast"]
    third = invoke("analyze", folder, *SMALL)
    assert third.exit_code == 0 and third.output.count("same protocol; kept") == 4, third.output
    assert set(json.loads((out / "analysis.json").read_text())["paired"]) == {"contextrast", "pixel-contrast"}
