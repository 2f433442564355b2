"""Paired ablations: one preset trained with several contrastive methods over several seeds.

The folder holds one run folder per (method, seed), ``<method>-seed<k>/``, trained one after
the other with ``train.seed = k`` for every method, so a seed's runs see the same images in
the same order with the same augmentation and start from the same network weights: the
per-seed differences are paired. Each finished run's best checkpoint is evaluated under one
protocol (``evaluation.json`` beside it), then ``ablation.json``, ``ablation.md`` and
``ablation.png`` summarise them (``experiments.paired``). Running the same ablation again resumes:
finished runs are skipped, a stopped run continues from its ``last.pt``, and an evaluation
is redone only when the protocol asked for changed.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text
from contextrast_cli.config import Config, resolve_config
from contextrast_cli.train.reporting import Reporter
from contextrast_cli.train.runs import ABLATION_PLAN
from contextrast_cli.errors import ConfigError, Interrupted

METHODS = ("none", "pixel-contrast", "contextrast")


@dataclass(frozen=True)
class AblationSpec:
    """What to ablate and how to evaluate it.

    Args:
        preset / config_file / overrides: the base configuration, as for ``train``.
        methods: ``contrast.method`` values; the first is the baseline of the paired differences.
        seeds: ``train.seed`` values, each trained with every method.
        folder: the ablation folder (created; an existing one is resumed).
        split: the split every best checkpoint is evaluated on (default: the config's eval.split).
        features: also measure the feature-space spread A and separation U.
        eval_overrides: ``eval.*`` settings of the final evaluation (boundary, scales, ...).
    """

    preset: str | None
    config_file: Path | None
    overrides: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    folder: Path
    split: str | None = None
    data_root: Path | None = None
    device: str | None = None
    features: bool = True
    eval_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if len(set(self.methods)) < 2 or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods: give two or more different methods, got {','.join(self.methods)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds: give one or more different seeds, got {self.seeds}")

    def run_name(self, method: str, seed: int) -> str:
        return f"{method}-seed{seed}"

    def run_config(self, method: str, seed: int) -> Config:
        """The resolved config of one run: the base with ``contrast.method`` and ``train.seed`` set."""
        flags = {"data.root": str(self.data_root.resolve()) if self.data_root else None,
                 "train.device": self.device, "contrast.method": method, "train.seed": seed}
        return resolve_config(self.preset, self.config_file, list(self.overrides), flags)

    def protocol(self, cfg: Config) -> dict:
        """The evaluation settings recorded with (and compared against) each ``evaluation.json``."""
        settings = {**cfg.eval.model_dump(mode="json"), **self.eval_overrides}
        settings.pop("batch_size", None)
        return {**settings, "split": self.split or cfg.eval.split, "features": self.features}


def run_ablation(spec: AblationSpec, reporter_factory: Callable[[], Reporter] = Reporter,
                 say: Callable[[str], None] = lambda _: None) -> dict:
    """Train and evaluate every (method, seed) not yet done, then write the summary files.

    Returns:
        The summary (``experiments.paired.summarize_ablation``), as written to ``ablation.json``.

    Raises:
        Interrupted: a stop request during a training (its ``last.pt`` is saved; run again to resume).
        ConfigError / DataError / CheckpointError: as ``train`` and ``evaluate`` raise them.
    """
    from contextrast_cli.experiments import paired
    from contextrast_cli.runtime.launch import launch_from_env

    if (launch := launch_from_env()) is not None and launch.world_size > 1:
        raise ConfigError(f"ablate trains its runs one after the other in one process, but {launch.launcher} "
                          f"started {launch.world_size}; run it without {launch.launcher} (one GPU per "
                          f"ablation; several ablations can share a machine with CUDA_VISIBLE_DEVICES)")
    spec.folder.mkdir(parents=True, exist_ok=True)
    _write_plan(spec)
    results = {}
    for seed in spec.seeds:
        for method in spec.methods:
            name = spec.run_name(method, seed)
            cfg = spec.run_config(method, seed)
            run_dir = spec.folder / name
            evaluation = run_dir / "evaluation.json"
            protocol = spec.protocol(cfg)
            if _recorded_protocol(evaluation) != protocol:
                _train(cfg, run_dir, reporter_factory(), say, name)
                say(f"{name}: evaluating {run_dir / 'best.pt'} on {protocol['split']}")
                metrics = _evaluate(spec, run_dir, protocol)
                atomic_write_text(evaluation, json.dumps({"protocol": protocol, **metrics}, indent=2))
            results[name] = json.loads(evaluation.read_text(encoding="utf-8"))
    summary = paired.summarize_ablation(results, spec.methods, spec.seeds, spec.run_name)
    paired.write_summary(spec.folder, summary)
    return summary


def _write_plan(spec: AblationSpec) -> None:
    plan = {"preset": spec.preset, "config": str(spec.config_file) if spec.config_file else None,
            "overrides": list(spec.overrides), "methods": list(spec.methods), "seeds": list(spec.seeds)}
    atomic_write_text(spec.folder / ABLATION_PLAN, json.dumps(plan, indent=2))


def _recorded_protocol(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("protocol")
    except (json.JSONDecodeError, OSError):
        return None


def _train(cfg: Config, run_dir: Path, reporter: Reporter, say: Callable[[str], None], name: str) -> None:
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
    trainer = Trainer(cfg, resume=payload, run_dir=run_dir, reporter=reporter)
    try:
        trainer.run()
    except Interrupted as exc:  # the advice is the ablation's, not one run's
        raise Interrupted(f"{str(exc).split(';')[0]} of {name}; its last.pt is saved; run the same "
                          f"`contextrast ablate` command again to resume the ablation", exc.exit_code) from None
    finally:
        shutdown_runtime(trainer.runtime)


def _evaluate(spec: AblationSpec, run_dir: Path, protocol: dict) -> dict:
    from contextrast_cli.evaluation.evaluator import evaluate_checkpoint
    from contextrast_cli.train.runs import checkpoint_path

    checkpoint, _ = checkpoint_path(run_dir)
    overrides = {k: v for k, v in protocol.items() if k not in ("split", "features")}
    return evaluate_checkpoint(checkpoint, split=protocol["split"], data_root=spec.data_root,
                               device=spec.device or "auto", eval_overrides=overrides,
                               features=protocol["features"])
