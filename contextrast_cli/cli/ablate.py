"""``contextrast ablate``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.app import (ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt, app, err,
                                     guarded, out, parse_list)


@app.command()
def ablate(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    methods: Annotated[str, typer.Option(help="contrast.method values, comma-separated; the first is the "
                                         "baseline of the paired differences.")] = "none,contextrast",
    seeds: Annotated[str, typer.Option(help="train.seed values, comma-separated; every method is trained "
                                       "with each.")] = "0,1,2",
    split: Annotated[Optional[str], typer.Option(help="Split each best checkpoint is evaluated on "
                                                 "(default: the config's eval.split).")] = None,
    folder: Annotated[Optional[Path], typer.Option(
        "--out", help="Ablation folder (default runs/ablate/<preset>); the same command again resumes it.")] = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
    features: Annotated[bool, typer.Option("--features/--no-features", help="Measure the feature-space "
                                           "spread A and separation U of every run.")] = True,
    boundary: Annotated[Optional[bool], typer.Option("--boundary/--no-boundary", help="Boundary IoU and boundary "
                                                     "F-score in the evaluation (default: eval.boundary).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Paired ablation: train the preset with each method for each seed (same data order and
    initial weights per seed), evaluate every best checkpoint alike, and print mean +- std per
    method, the per-seed differences with a 95% interval, and per-class deltas.

    Writes <out>/<method>-seed<k>/ (run folders with evaluation.json), ablation.json, ablation.md
    and ablation.png. Interrupted (Ctrl-C, SIGTERM, a crash)? Run the same command again: finished
    runs are kept, a stopped one resumes from its last.pt.
    """
    from contextrast_cli.experiments.ablation import AblationSpec, run_ablation
    from contextrast_cli.experiments.paired import markdown
    from contextrast_cli.train.reporting import RichReporter
    from contextrast_cli.errors import ConfigError

    with guarded(ctx, debug):
        if preset is None and config is None:
            raise ConfigError("ablate needs the configuration to train: pass --preset NAME or --config FILE.yaml")
        name = preset or config.stem
        spec = AblationSpec(preset=preset, config_file=config, overrides=tuple(overrides or ()),
                            methods=parse_list(methods, str, "--methods"), seeds=parse_list(seeds, int, "--seeds"),
                            folder=folder or Path("runs") / "ablate" / name, split=split, data_root=data_root,
                            device=device, features=features,
                            eval_overrides={} if boundary is None else {"boundary": boundary})
        summary = run_ablation(spec, reporter_factory=lambda: RichReporter(err),
                               say=lambda text: err.print(f"[bold]ablate[/] {text}"))
    out.print(markdown(summary))
    out.print(f"[bold green]done[/]: {spec.folder / 'ablation.md'}, ablation.json, ablation.png")
