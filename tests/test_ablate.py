"""``contextrast ablate``: paired runs, the summary's arithmetic against the per-run files, resume."""

import json
import math
import os
import signal
import statistics

import cv2
import pytest
from scipy.stats import t as student_t

from contextrast_cli.train.trainer import Trainer
from tests.conftest import invoke, one_line_error, tiny_overrides


def ablate_args(tmp_path, *extra):
    sets = [a for o in tiny_overrides(tmp_path) for a in ("--set", o)]
    return ["ablate", "--preset", "toy", "--methods", "none,contextrast", "--seeds", "0,1",
            "-o", tmp_path / "abl", *sets, *extra]


def test_ablate_resumes_and_its_table_adds_up(tmp_path, monkeypatch):
    fired = []
    original = Trainer._step

    def sigterm_in_the_last_run(self, batch):  # a scheduler's preemption while contextrast-seed1 trains
        terms = original(self, batch)
        if (self.cfg.contrast.method, self.cfg.train.seed, self.iteration) == ("contextrast", 1, 1) and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return terms

    monkeypatch.setattr(Trainer, "_step", sigterm_in_the_last_run)
    first = invoke(*ablate_args(tmp_path, "--features"))
    assert first.exit_code == 143, first.output
    assert "run the same `contextrast ablate` command again" in first.output
    folder = tmp_path / "abl"
    done = ["none-seed0", "contextrast-seed0", "none-seed1"]
    assert all((folder / name / "evaluation.json").is_file() for name in done)
    assert not (folder / "contextrast-seed1" / "evaluation.json").exists()
    assert not (folder / "ablation.json").exists()
    stamps = {name: (folder / name / "evaluation.json").stat().st_mtime_ns for name in done}
    monkeypatch.undo()

    second = invoke(*ablate_args(tmp_path, "--features", "--score", "last"))
    assert second.exit_code == 0, second.output
    assert "contextrast-seed1: resuming at iteration 2 of 4" in second.output
    assert {name: (folder / name / "evaluation.json").stat().st_mtime_ns for name in done} == stamps  # kept

    runs = {f"{m}-seed{s}": json.loads((folder / f"{m}-seed{s}" / "evaluation.json").read_text())
            for m in ("none", "contextrast") for s in (0, 1)}
    summary = json.loads((folder / "ablation.json").read_text())
    assert summary["checkpoint"] == "last" and summary["reference"] == "none"
    assert all(runs[name]["checkpoint"].endswith(f"{name}/last.pt") for name in runs)
    for method in ("none", "contextrast"):
        values = [runs[f"{method}-seed{s}"]["mIoU"] for s in (0, 1)]
        assert summary["scores"][method]["mIoU"]["values"] == values
        assert summary["scores"][method]["mIoU"]["mean"] == pytest.approx(statistics.mean(values))
        assert summary["scores"][method]["mIoU"]["std"] == pytest.approx(statistics.stdev(values))
    for key, get in (("mIoU", lambda r: r["mIoU"]), ("mBIoU", lambda r: r["boundary"]["mBIoU"])):
        diffs = [get(runs[f"contextrast-seed{s}"]) - get(runs[f"none-seed{s}"]) for s in (0, 1)]
        paired = summary["paired"]["contextrast"][key]
        assert paired["values"] == pytest.approx(diffs)
        half = student_t.ppf(0.975, 1) * statistics.stdev(diffs) / math.sqrt(2)
        assert paired["ci95"] == pytest.approx([statistics.mean(diffs) - half, statistics.mean(diffs) + half])
    road = [runs[f"contextrast-seed{s}"]["IoU"]["road"] - runs[f"none-seed{s}"]["IoU"]["road"] for s in (0, 1)]
    assert summary["per_class"]["contextrast"]["IoU"]["road"] == pytest.approx(statistics.mean(road))
    # A / U: the encoder taps for both methods, the projection heads only where they were trained
    assert summary["features"]["none"]["embeddings"] is None and set(summary["features"]["none"]["layers"]) == {
        "1", "2", "3", "4"}
    a = [runs[f"contextrast-seed{s}"]["features"]["embeddings"]["4"]["A"] for s in (0, 1)]
    assert summary["features"]["contextrast"]["embeddings"]["4"]["A"] == pytest.approx(statistics.mean(a))
    table = (folder / "ablation.md").read_text()
    mean, std = summary["scores"]["none"]["mIoU"]["mean"], summary["scores"]["none"]["mIoU"]["std"]
    assert f"| none | {mean * 100:.2f} +- {std * 100:.2f} |" in table
    assert f"{mean * 100:.2f} +- {std * 100:.2f}" in second.output
    assert cv2.imread(str(folder / "ablation.png")) is not None
    assert summary["units"] == "fraction" and "note: replaced" not in second.output
    # the same command once more: nothing trains, the summary is written again, and one line says so
    third = invoke(*ablate_args(tmp_path, "--features"))
    assert third.exit_code == 0 and "training" not in third.output and "evaluating" not in third.output
    assert f"note: replaced 3 existing files: {folder / 'ablation.json'}" in " ".join(third.output.split())

    # paired: a seed's runs start from the same weights and see the same first batch
    def first_ce(name):
        lines = (folder / name / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[0])["loss_ce"]
    assert first_ce("none-seed0") == first_ce("contextrast-seed0")
    assert first_ce("none-seed1") == first_ce("contextrast-seed1")
    assert first_ce("none-seed0") != first_ce("none-seed1")


def test_ablate_bad_input_is_one_line(tmp_path, monkeypatch):
    one_line_error(invoke("ablate", "--preset", "toy", "--methods", "none"), 2, "two or more different values")
    one_line_error(invoke("ablate", "--preset", "toy", "--methods", "none,ccl"), 2, "--vary contrast.method=ccl")
    one_line_error(invoke("ablate", "--methods", "none,contextrast"), 2, "pass --preset NAME")
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    one_line_error(invoke(*ablate_args(tmp_path)), 2, "run it without torchrun")


def test_a_run_stopped_during_its_final_validation_is_validated_again(tmp_path):
    """last.pt at train.iterations but saved while the final validation was pending (a SIGTERM
    during it): the ablation resumes the run, which redoes that validation, instead of scoring
    a stale best.pt."""
    from contextrast_cli.config import ContrastConfig, resolve_config
    from contextrast_cli.experiments.ablation import _train
    from contextrast_cli.models.checkpoint import load_checkpoint, save_checkpoint
    from contextrast_cli.train.reporting import Reporter

    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path))
    run_dir = Trainer(cfg).run().run_dir
    payload = load_checkpoint(run_dir / "last.pt")
    save_checkpoint(run_dir / "last.pt", {**payload, "pending_validation": True})
    log = run_dir / "metrics.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()
                           if not ('"mIoU"' in line and json.loads(line)["iteration"] == 4)))
    said = []
    _train(cfg, run_dir, Reporter(), said.append, "none-seed0")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in records if "mIoU" in r] == [2, 4]
    assert load_checkpoint(run_dir / "last.pt")["pending_validation"] is False
    assert said == ["none-seed0: its final validation was interrupted; validating again"]


def test_the_summary_takes_runs_without_a_or_u():
    """A class with a single sampled pixel has no spread: A (or U) is None in evaluation.json;
    the summary averages what is defined and the table shows '-' instead of failing."""
    from contextrast_cli.experiments import paired

    def run(miou, a):
        return {"mIoU": miou, "split": "val", "num_images": 2, "IoU": {"road": miou}, "boundary": None,
                "features": {"layers": {"4": {"A": a, "U": 0.5}}, "embeddings": None}}

    results = {"none-seed0": run(0.5, None), "none-seed1": run(0.6, 0.25),
               "contextrast-seed0": run(0.55, None), "contextrast-seed1": run(0.7, None)}
    summary = paired.summarize_ablation(results, ("none", "contextrast"), (0, 1), lambda m, s: f"{m}-seed{s}")
    assert summary["features"]["none"]["layers"]["4"] == {"A": 0.25, "U": 0.5}
    assert summary["features"]["contextrast"]["layers"]["4"] == {"A": None, "U": 0.5}
    assert "| contextrast | encoder features | 4 | - | 0.5000 | - |" in paired.markdown(summary)


def test_vary_a_list_valued_key_and_a_grid_resumes_and_tabulates(tmp_path, monkeypatch):
    """Two axes, one of them list-valued: 4 variants, folders named from the values, the reference
    (every axis at its first value) first; a SIGTERM in the last run, then the same command resumes."""
    fired = []
    original = Trainer._step

    def sigterm_in_the_last_run(self, batch):
        terms = original(self, batch)
        if (tuple(self.cfg.contrast.layers), self.cfg.contrast.bane.ratio, self.iteration) == ((3, 4), 1.0, 1) \
                and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return terms

    pytest.importorskip("mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's local store: ./mlruns/
    sets = [a for o in [*tiny_overrides(tmp_path), "contrast.method=contextrast", "train.loggers=[mlflow]"]
            for a in ("--set", o)]
    args = ["ablate", "--preset", "toy", "--vary", "contrast.layers=[4],[3,4]", "--vary",
            "contrast.bane.ratio=0.25,1.0", "--seeds", "0", "--out", tmp_path / "abl", *sets]
    monkeypatch.setattr(Trainer, "_step", sigterm_in_the_last_run)
    assert invoke(*args).exit_code == 143
    monkeypatch.setattr(Trainer, "_step", original)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "2 variant(s) x 1 seed(s)" not in result.output and "4 variant(s) x 1 seed(s) = 4 runs" in result.output
    folder = tmp_path / "abl"
    names = ["contrast.layers=4+contrast.bane.ratio=0.25-seed0", "contrast.layers=4+contrast.bane.ratio=1.0-seed0",
             "contrast.layers=3_4+contrast.bane.ratio=0.25-seed0", "contrast.layers=3_4+contrast.bane.ratio=1.0-seed0"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(names)
    assert "contrast.layers=3_4+contrast.bane.ratio=1.0-seed0: resuming at iteration 2 of 4" in " ".join(result.output.split())
    summary = json.loads((folder / "ablation.json").read_text())
    labels = ["contrast.layers=[4], contrast.bane.ratio=0.25", "contrast.layers=[4], contrast.bane.ratio=1.0",
              "contrast.layers=[3,4], contrast.bane.ratio=0.25", "contrast.layers=[3,4], contrast.bane.ratio=1.0"]
    assert summary["variants"] == labels and summary["reference"] == labels[0]
    assert summary["axes"] == {"contrast.layers": ["[4]", "[3,4]"], "contrast.bane.ratio": ["0.25", "1.0"]}
    runs = {n: json.loads((folder / n / "evaluation.json").read_text()) for n in names}
    config = json.loads((folder / names[3] / "evaluation.json").read_text())
    assert config["checkpoint"].endswith("last.pt")
    diff = runs[names[3]]["mIoU"] - runs[names[0]]["mIoU"]
    assert summary["paired"][labels[3]]["mIoU"]["values"] == pytest.approx([diff])
    table = (folder / "ablation.md").read_text()
    assert f"| {labels[3]} | mIoU | {diff * 100:+.2f} |" in table
    from contextrast_cli.config import ContrastConfig

    trained = __import__("contextrast_cli.models.checkpoint", fromlist=["x"]).load_checkpoint(folder / names[2] / "last.pt")
    contrast = trained["config"]["contrast"]  # lambdas null: each layer's paper weight, resolved by the loss
    assert contrast["layers"] == [3, 4] and ContrastConfig(**contrast).resolved().lambdas == (0.7, 1.0)
    # every run is one MLflow run (the interrupted one continued), tagged with its axis values and seed
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    tracked = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    tags = sorted((r.data.tags["axis.contrast.layers"], r.data.tags["axis.contrast.bane.ratio"], r.data.tags["seed"],
                   r.data.tags["ablation"], r.info.status) for r in tracked)
    assert tags == sorted((layers, ratio, "0", "abl", "FINISHED") for layers in ("[4]", "[3,4]") for ratio in ("0.25", "1.0"))


def test_an_invalid_axis_value_or_a_biased_selection_is_refused_before_training(tmp_path):
    sets = [a for o in tiny_overrides(tmp_path) for a in ("--set", o)]
    base = ["ablate", "--preset", "toy", "--seeds", "0", "--out", tmp_path / "abl", *sets]
    one_line_error(invoke(*base, "--vary", "contrast.bane.ratio=0.5,1.5"), 2, "--vary contrast.bane.ratio=1.5")
    one_line_error(invoke(*base, "--vary", "contrast.layers=[4],[5,6]"), 2, "contrast.layers=[5,6]")
    one_line_error(invoke(*base, "--score", "best", "--select-split", "val", "--split", "val"), 2,
                   "is the split best.pt is selected on")
    one_line_error(invoke(*base, "--score", "best"), 2, "--score best needs --select-split")
    # issue 37: the value is named with the option that gave it (it said --set contrast.bane.ratio=abc)
    one_line_error(invoke(*base, "--vary", "contrast.bane.ratio=0.5,abc"), 2,
                   "invalid configuration: --vary contrast.bane.ratio=abc: contrast.bane.ratio")
    assert "--set" not in invoke(*base, "--vary", "contrast.bane.ratio=0.5,abc").output
    # the old --checkpoint last|best works one more release, with one line; a path is refused in one line
    old = invoke(*base, "--checkpoint", "best")
    one_line_error(old, 2, "--score best needs --select-split", after_progress=True)
    assert old.output.count("note: --checkpoint last|best is now --score last|best") == 1, old.output
    one_line_error(invoke(*base, "--checkpoint", "runs/toy"), 2, "ablate trains its own runs and takes no checkpoint")
    assert not (tmp_path / "abl").exists() and not (tmp_path / "runs").exists()  # nothing trained


def test_more_methods_on_the_same_folder_train_only_the_missing_runs(tmp_path):
    """Issue 36: an ablation folder is extended, not started over (`--methods none,contextrast,contextrast++`
    on the folder of a `contextrast,contextrast++` ablation trains the `none` runs alone)."""
    sets = [a for o in tiny_overrides(tmp_path) for a in ("--set", o)]
    common = ["ablate", "--preset", "toy", "--seeds", "0", "-o", tmp_path / "abl", *sets]
    first = invoke(*common, "--methods", "contextrast,contextrast++")
    assert first.exit_code == 0, first.output
    folder = tmp_path / "abl"
    kept = {name: [(folder / name / f).stat().st_mtime_ns for f in ("last.pt", "evaluation.json")]
            for name in ("contextrast-seed0", "contextrast++-seed0")}
    second = invoke(*common, "--methods", "none,contextrast,contextrast++")
    assert second.exit_code == 0, second.output
    assert "none-seed0: training" in " ".join(second.output.split())
    assert not any(f"{name}: {step}" in second.output for name in kept for step in ("training", "evaluating"))
    assert {name: [(folder / name / f).stat().st_mtime_ns for f in ("last.pt", "evaluation.json")]
            for name in kept} == kept
    summary = json.loads((folder / "ablation.json").read_text())
    assert summary["reference"] == "none" and set(summary["paired"]) == {"contextrast", "contextrast++"}
