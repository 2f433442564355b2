"""``contextrast ablate``."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.cli.analyze import invocation
from contextrast_cli.cli.app import (BatchSizeOpt, ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt, SetOpt,
                                     SplitOpt, app, err, existing, guarded, note_replaced, out, out_option, parse_list,
                                     renamed)

VaryOpt = Annotated[Optional[list[str]], typer.Option(
    "--vary", metavar="KEY=V1,V2,...", help="Any config key and its values, written as for --set (lists work: "
    "contrast.layers=[4],[3,4],[1,2,3,4]); repeat for a grid of every combination. The first value of each "
    "axis is the reference of the paired differences.")]
MethodsOpt = Annotated[Optional[str], typer.Option(metavar="M1,M2,...", help="Shortcut for --vary "
                                                   "contrast.method=...", show_default="none,contextrast without "
                                                   "--vary")]
SeedsOpt = Annotated[str, typer.Option(metavar="S1,S2,...", help="The train.seed values; every variant is trained "
                                       "with each.")]
ScoreOpt = Annotated[Optional[str], typer.Option(
    "--score", metavar="last|best", show_default="last", help="Score each run's last.pt (the end of the schedule, as papers report) or "
    "its best.pt (then --select-split chooses it, on another split than the scored one).")]
OldCheckpointOpt = Annotated[Optional[str], typer.Option("--checkpoint", hidden=True)]
SelectSplitOpt = Annotated[Optional[str], typer.Option(
    "--select-split", metavar="SPLIT", help="With --score best: the split training validates on and best.pt is "
    "chosen on (eval.split); it must differ from --split.")]
OutOpt = out_option("Ablation folder; the same command again resumes it.", default="runs/ablate/PRESET")
FeaturesOpt = Annotated[bool, typer.Option("--features", help="Also measure the feature-space spread A and "
                                           "separation U of every run.")]
OldNoFeaturesOpt = Annotated[bool, typer.Option("--no-features", hidden=True)]
BoundaryOpt = Annotated[Optional[bool], typer.Option("--boundary/--no-boundary", help="Boundary IoU and boundary "
                                                     "F-score in the evaluation.", show_default="eval.boundary")]


@app.command()
def ablate(ctx: typer.Context, preset: PresetOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
           vary: VaryOpt = None, methods: MethodsOpt = None, seeds: SeedsOpt = "0,1,2", score: ScoreOpt = None,
           split: SplitOpt = None, select_split: SelectSplitOpt = None, folder: OutOpt = None,
           data_root: DataRootOpt = None, batch_size: BatchSizeOpt = None, device: DeviceOpt = None,
           features: FeaturesOpt = False, boundary: BoundaryOpt = None, debug: DebugOpt = False,
           checkpoint: OldCheckpointOpt = None, no_features: OldNoFeaturesOpt = False) -> None:
    """Paired ablation: train the preset with each variant (--vary, or --methods) for each seed (same data
    order and initial weights per seed), score every run alike, and print mean +- std per variant, the
    per-seed differences from the reference with a 95% interval, and per-class deltas, in percent.

    Writes OUT/VARIANT-seedK/ (run folders with evaluation.json), ablation.json (fractions), ablation.md and
    ablation.png, replacing an older summary with a note. Interrupted (Ctrl-C, SIGTERM, a crash)? Run the
    same command again: finished runs are kept, a stopped one resumes from its last.pt.
    """
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.experiments.ablation import AblationSpec, run_ablation
    from contextrast_cli.experiments.paired import markdown
    from contextrast_cli.train.reporting import RichReporter

    with guarded(ctx, debug):
        if preset is None and config is None:
            raise ConfigError("ablate needs the configuration to train: pass --preset NAME or --config FILE.yaml")
        spec = AblationSpec(preset=preset, config_file=config, overrides=tuple(overrides or ()),
                            axes=_axes(vary, methods), seeds=parse_list(seeds, int, "--seeds"),
                            folder=folder or Path("runs") / "ablate" / (preset or config.stem),
                            checkpoint=_score(score, checkpoint), split=split, select_split=select_split,
                            data_root=data_root, device=device, batch_size=batch_size, features=features,
                            eval_overrides={} if boundary is None else {"boundary": boundary},
                            command=invocation(ctx))
        before = existing(*(spec.folder / f"ablation.{suffix}" for suffix in ("json", "md", "png")))
        summary = run_ablation(spec, reporter_factory=lambda: RichReporter(err),
                               say=lambda text: err.print(f"[bold]ablate[/] {text}"))
    out.print(markdown(summary))
    out.print(f"[bold green]done[/]: {spec.folder / 'report.html'}, ablation.md, ablation.json, ablation.png")
    note_replaced(before)


def _axes(vary: list[str] | None, methods: str | None) -> tuple:
    """The ``--vary`` axes, ``--methods`` first (``none,contextrast`` when neither is given)."""
    from contextrast_cli.experiments.axes import parse_axis

    axes = [parse_axis(text) for text in vary or []]
    if methods is not None or not axes:
        chosen = parse_list(methods or "none,contextrast", str, "--methods")
        axes.insert(0, parse_axis(f"contrast.method={','.join(chosen)}"))
    return tuple(axes)


def _score(score: str | None, old: str | None) -> str:
    """``--score``, or the old ``--checkpoint last|best`` (one release, with a note); ``--checkpoint``
    with a path is refused: ablate trains its own runs."""
    from contextrast_cli.errors import ConfigError

    if old is not None and old not in ("last", "best"):
        raise ConfigError(f"--checkpoint {old}: ablate trains its own runs and takes no checkpoint; choose which "
                          f"checkpoint of each run is scored with --score last|best")
    return renamed(score, old, "--checkpoint last|best", "--score last|best") or "last"
