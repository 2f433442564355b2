"""``contextrast ablate``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.analyze import invocation
from contextrast_cli.cli.app import (ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt, app, err,
                                     guarded, out, parse_list)

VaryOpt = Annotated[Optional[list[str]], typer.Option(
    "--vary", help="KEY=V1,V2,...: any config key and its values, written as for --set (lists work: "
    "contrast.layers=[4],[3,4],[1,2,3,4]); repeat for a grid of every combination. The first value of each "
    "axis is the reference of the paired differences.")]
MethodsOpt = Annotated[Optional[str], typer.Option(help="Shortcut for --vary contrast.method=...; default "
                                                   "none,contextrast when no --vary is given.")]
SeedsOpt = Annotated[str, typer.Option(help="train.seed values, comma-separated; every variant is trained with each.")]
CheckpointChoiceOpt = Annotated[str, typer.Option(
    "--checkpoint", metavar="last|best", help="Score each run's last.pt (the end of the schedule, as papers "
    "report) or its best.pt (then --select-split chooses it, on another split than the scored one).")]
SplitOpt = Annotated[Optional[str], typer.Option(help="Split each run is scored on (default: the config's "
                                                 "eval.split).")]
SelectSplitOpt = Annotated[Optional[str], typer.Option(
    "--select-split", help="With --checkpoint best: the split training validates on and best.pt is chosen on "
    "(eval.split); it must differ from --split.")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Ablation folder (default runs/ablate/<preset>); the same command again resumes it.")]
FeaturesOpt = Annotated[bool, typer.Option("--features/--no-features", help="Measure the feature-space spread A "
                                           "and separation U of every run.")]
BoundaryOpt = Annotated[Optional[bool], typer.Option("--boundary/--no-boundary", help="Boundary IoU and boundary "
                                                     "F-score in the evaluation (default: eval.boundary).")]


@app.command()
def ablate(ctx: typer.Context, preset: PresetOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
           vary: VaryOpt = None, methods: MethodsOpt = None, seeds: SeedsOpt = "0,1,2",
           checkpoint: CheckpointChoiceOpt = "last", split: SplitOpt = None, select_split: SelectSplitOpt = None,
           folder: OutOpt = None, data_root: DataRootOpt = None, device: DeviceOpt = None,
           features: FeaturesOpt = True, boundary: BoundaryOpt = None, debug: DebugOpt = False) -> None:
    """Paired ablation: train the preset with each variant (--vary, or --methods) for each seed (same data
    order and initial weights per seed), score every run alike, and print mean +- std per variant, the
    per-seed differences from the reference with a 95% interval, and per-class deltas.

    Writes <out>/<variant>-seed<k>/ (run folders with evaluation.json), ablation.json, ablation.md and
    ablation.png. Interrupted (Ctrl-C, SIGTERM, a crash)? Run the same command again: finished runs are
    kept, a stopped one resumes from its last.pt.
    """
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.experiments.ablation import AblationSpec, run_ablation
    from contextrast_cli.experiments.axes import parse_axis
    from contextrast_cli.experiments.paired import markdown
    from contextrast_cli.train.reporting import RichReporter

    with guarded(ctx, debug):
        if preset is None and config is None:
            raise ConfigError("ablate needs the configuration to train: pass --preset NAME or --config FILE.yaml")
        axes = [parse_axis(text) for text in vary or []]
        if methods is not None or not axes:
            chosen = parse_list(methods or "none,contextrast", str, "--methods")
            axes.insert(0, parse_axis(f"contrast.method={','.join(chosen)}"))
        spec = AblationSpec(preset=preset, config_file=config, overrides=tuple(overrides or ()), axes=tuple(axes),
                            seeds=parse_list(seeds, int, "--seeds"), folder=folder or Path("runs") / "ablate" /
                            (preset or config.stem), checkpoint=checkpoint, split=split, select_split=select_split,
                            data_root=data_root, device=device, features=features,
                            eval_overrides={} if boundary is None else {"boundary": boundary}, command=invocation(ctx))
        summary = run_ablation(spec, reporter_factory=lambda: RichReporter(err),
                               say=lambda text: err.print(f"[bold]ablate[/] {text}"))
    out.print(markdown(summary))
    out.print(f"[bold green]done[/]: {spec.folder / 'report.html'}, ablation.md, ablation.json, ablation.png")
