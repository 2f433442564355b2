"""Paired ablations: one preset trained with several variants (any config key, or a grid of
keys) over several seeds.

The folder holds one run folder per (variant, seed) (``experiments.axes.folder_names``:
``contrast.bane.ratio=0.25-seed0``; ``<method>-seed<k>`` when only ``contrast.method`` varies),
trained one after the other with ``train.seed = k`` for every variant, so a seed's runs see the
same images in the same order with the same augmentation and start from the same network
weights: the per-seed differences are paired. Each finished run is evaluated under one
protocol (``evaluation.json`` beside it): its ``last.pt`` by default (the end of the schedule,
as papers report), or its ``best.pt`` when selected on another split than the one scored. Then
``ablation.json``, ``ablation.md``, ``ablation.png`` and ``report.html`` summarise them
(``experiments.paired``, ``experiments.ablation_page``).
Running the same ablation again resumes: finished runs are skipped, a stopped run continues
from its ``last.pt``, and an evaluation is redone only when the protocol asked for changed.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.config import Config, resolve_config
from contextrast_cli.errors import ConfigError, Interrupted
from contextrast_cli.experiments.axes import Axis, Variant, folder_names, grid
from contextrast_cli.train.reporting import Reporter
from contextrast_cli.train.runs import ABLATION_PLAN

CHECKPOINTS = ("last", "best")


@dataclass(frozen=True)
class AblationSpec:
    """What to ablate and how to evaluate it.

    Args:
        preset / config_file / overrides: the base configuration, as for ``train``.
        axes: the varied keys (``experiments.axes.Axis``); their grid's first variant is the
            reference of the paired differences.
        seeds: ``train.seed`` values, each trained with every variant.
        folder: the ablation folder (created; an existing one is resumed).
        checkpoint: the checkpoint of each run scored (``--score``): ``last`` (default) or ``best``
            (needs ``select_split``).
        split: the split every run is scored on (default: the config's eval.split).
        select_split: the split ``best.pt`` is chosen on (training's validation, ``eval.split``);
            only with ``checkpoint="best"``, and never the scored split.
        features: also measure the feature-space spread A and separation U.
        eval_overrides: ``eval.*`` settings of the final evaluation (boundary, scales, ...).
        command: the command line, shown on ``report.html``.
    """

    preset: str | None
    config_file: Path | None
    overrides: tuple[str, ...]
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...]
    folder: Path
    checkpoint: str = "last"
    split: str | None = None
    select_split: str | None = None
    data_root: Path | None = None
    device: str | None = None
    batch_size: int | None = None
    features: bool = False
    eval_overrides: dict = field(default_factory=dict)
    command: str = ""

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds: give one or more different seeds, got {self.seeds}")
        if self.checkpoint not in CHECKPOINTS:
            raise ConfigError(f"--score {self.checkpoint}: choose last (the end of the schedule) or best")
        if self.checkpoint == "best" and self.select_split is None:
            raise ConfigError("--score best needs --select-split SPLIT, the split best.pt is chosen on; it "
                              "must differ from the scored --split (or score last.pt: --score last)")
        if self.checkpoint == "last" and self.select_split is not None:
            raise ConfigError("--select-split chooses best.pt; it applies with --score best only")

    @property
    def variants(self) -> list[Variant]:
        return grid(list(self.axes))

    def names(self) -> dict[tuple[Variant, int], str]:
        return folder_names(self.variants, self.seeds)

    def run_config(self, variant: Variant, seed: int) -> Config:
        """The resolved config of one run: the base with the variant's settings and ``train.seed``.

        Raises:
            ConfigError: an axis value that does not validate, named.
        """
        flags = {"data.root": str(self.data_root.resolve()) if self.data_root else None,
                 "train.device": self.device, "train.seed": seed, "eval.split": self.select_split,
                 "train.batch_size": self.batch_size}
        return resolve_config(self.preset, self.config_file, list(self.overrides), flags, varied=variant.overrides)

    def protocol(self, cfg: Config) -> dict:
        """The evaluation settings recorded with (and compared against) each ``evaluation.json``."""
        settings = {**cfg.eval.model_dump(mode="json"), **self.eval_overrides}
        settings.pop("batch_size", None)
        split = self.split or (cfg.eval.split if self.select_split is None else None)
        if split is None:
            raise ConfigError("--select-split is given: also give --split, the split the runs are scored on")
        if split == self.select_split:
            raise ConfigError(f"--split {split} is the split best.pt is selected on (--select-split): its score "
                              f"would be the maximum over the run's validations; score another split, or "
                              f"--score last")
        return {**settings, "split": split, "features": self.features, "checkpoint": self.checkpoint,
                "select_split": self.select_split}


def run_ablation(spec: AblationSpec, reporter_factory: Callable[[], Reporter] = Reporter,
                 say: Callable[[str], None] = lambda _: None) -> dict:
    """Train and evaluate every (variant, seed) not yet done, then write the summary files.

    Every run's config is resolved (and each axis value validated) before anything trains.

    Returns:
        The summary (``experiments.paired.summarize_ablation``), as written to ``ablation.json``.

    Raises:
        Interrupted: a stop request during a training (its ``last.pt`` is saved; run again to resume).
        ConfigError / DataError / CheckpointError: as ``train`` and ``evaluate`` raise them.
    """
    from contextrast_cli.experiments import paired
    from contextrast_cli.experiments.ablation_page import write_ablation_page

    _refuse_several_processes()
    names = spec.names()
    plan = {(variant, seed): spec.run_config(variant, seed) for variant, seed in names}
    protocols = {key: spec.protocol(cfg) for key, cfg in plan.items()}
    say(f"{len(spec.variants)} variant(s) x {len(spec.seeds)} seed(s) = {len(names)} runs")
    spec.folder.mkdir(parents=True, exist_ok=True)
    _write_plan(spec, names)
    results = {}
    for seed in spec.seeds:
        for variant in spec.variants:
            name, cfg, protocol = names[(variant, seed)], plan[(variant, seed)], protocols[(variant, seed)]
            run_dir, tags = spec.folder / name, {**variant.tags, "seed": str(seed), "ablation": spec.folder.name}
            evaluation = run_dir / "evaluation.json"
            if _recorded_protocol(evaluation) != protocol:
                _train(cfg, run_dir, reporter_factory(), say, name, tags)
                say(f"{name}: evaluating {run_dir / (spec.checkpoint + '.pt')} on {protocol['split']}")
                metrics = _evaluate(spec, run_dir, protocol)
                atomic_write_text(evaluation, json.dumps({"protocol": protocol, **metrics}, indent=2))
            results[name] = json.loads(evaluation.read_text(encoding="utf-8"))
    labels = [variant.label for variant in spec.variants]
    by_label = {(v.label, s): names[(v, s)] for v, s in names}
    summary = paired.summarize_ablation(results, labels, spec.seeds, lambda label, seed: by_label[(label, seed)])
    summary.update(axes={axis.key: list(axis.values) for axis in spec.axes}, checkpoint=spec.checkpoint,
                   select_split=spec.select_split)
    paired.write_summary(spec.folder, summary)
    write_ablation_page(spec.folder, summary, spec.command, data_root=spec.data_root, device=spec.device or "auto")
    return summary


def _refuse_several_processes() -> None:
    from contextrast_cli.runtime.launch import launch_from_env

    if (launch := launch_from_env()) is not None and launch.world_size > 1:
        raise ConfigError(f"ablate trains its runs one after the other in one process, but {launch.launcher} "
                          f"started {launch.world_size}; run it without {launch.launcher} (one GPU per "
                          f"ablation; several ablations can share a machine with CUDA_VISIBLE_DEVICES)")


def _write_plan(spec: AblationSpec, names: dict) -> None:
    plan = {"preset": spec.preset, "config": str(spec.config_file) if spec.config_file else None,
            "overrides": list(spec.overrides), "axes": {axis.key: list(axis.values) for axis in spec.axes},
            "seeds": list(spec.seeds), "checkpoint": spec.checkpoint, "split": spec.split,
            "select_split": spec.select_split, "runs": sorted(names.values())}
    atomic_write_text(spec.folder / ABLATION_PLAN, json.dumps(plan, indent=2))


def _recorded_protocol(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("protocol")
    except (json.JSONDecodeError, OSError):
        return None


def _train(cfg: Config, run_dir: Path, reporter: Reporter, say: Callable[[str], None], name: str,
           tags: dict[str, str] | None = None) -> None:
    """Train the run to its end: from scratch, from its ``last.pt``, or not at all when finished."""
    from contextrast_cli.runtime.device import shutdown_runtime
    from contextrast_cli.train.resume import check_same_run, load_resumable
    from contextrast_cli.train.trainer import Trainer

    payload = None
    if (run_dir / "last.pt").is_file():
        payload, _ = load_resumable(run_dir)
        check_same_run(payload, cfg)
        if payload["iteration"] >= cfg.train.iterations:
            if not payload.get("pending_validation"):
                return
            say(f"{name}: its final validation was interrupted; validating again")
        else:
            say(f"{name}: resuming at iteration {payload['iteration']} of {cfg.train.iterations}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        say(f"{name}: training {cfg.train.iterations} iterations")
    trainer = Trainer(cfg, resume=payload, run_dir=run_dir, reporter=reporter, tags=tags)
    try:
        trainer.run()
    except Interrupted as exc:  # the advice is the ablation's, not one run's
        raise Interrupted(f"{str(exc).split(';')[0]} of {name}; its last.pt is saved; run the same "
                          f"`contextrast ablate` command again to resume the ablation", exc.exit_code) from None
    finally:
        shutdown_runtime(trainer.runtime)


def _evaluate(spec: AblationSpec, run_dir: Path, protocol: dict) -> dict:
    from contextrast_cli.evaluation.evaluator import evaluate_checkpoint

    checkpoint = run_dir / f"{protocol['checkpoint']}.pt"
    overrides = {k: v for k, v in protocol.items() if k not in ("split", "features", "checkpoint", "select_split")}
    return evaluate_checkpoint(checkpoint, split=protocol["split"], data_root=spec.data_root,
                               device=spec.device or "auto", eval_overrides=overrides,
                               features=protocol["features"])
