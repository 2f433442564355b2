"""``contextrast analyze``, and ``invocation``: the command line a report page shows."""

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperArgument

from contextrast_cli.cli.app import (DataRootOpt, DebugOpt, DeviceOpt, SetOpt, app, checked_sets, err, guarded, out,
                                     out_option, parse_list, progress)
from contextrast_cli.cli.options import EVAL_KEYS


def invocation(ctx: typer.Context) -> str:
    """The command as typed when this process is the ``contextrast`` console script (or ``python -m
    contextrast_cli``), else rebuilt from the parsed parameters (options at their default left out)."""
    argv = sys.argv
    if Path(argv[0]).name in ("contextrast", "__main__.py") and ctx.info_name in argv[1:]:
        return shlex.join(["contextrast", *argv[1:]])
    parts = ["contextrast", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or param.name == "debug" or value in ((), []):
            continue
        values = list(value) if isinstance(value, (list, tuple)) and getattr(param, "multiple", False) else [value]
        if isinstance(param, TyperArgument):
            parts += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif getattr(param, "is_flag", False) and isinstance(value, bool):
            parts.append(param.opts[0] if value else (param.secondary_opts or [f"--no-{param.name}"])[0])
        else:
            parts += [part for v in values for part in (param.opts[0], str(v))]
    return shlex.join(parts)


TargetArg = Annotated[Path, typer.Argument(metavar="PATH", help="A checkpoint, a run folder (its best.pt, else last.pt) or an "
                                           "ablation folder (every run, with differences to the reference).",
                                           show_default=False)]
SplitOpt = Annotated[Optional[str], typer.Option("--split", metavar="SPLIT", help="Split to analyse.",
                                                 show_default="the config's eval.split; for an ablation, its split")]
OutOpt = out_option("Output folder.", default="analysis/ inside the run or ablation folder")
SizesOpt = Annotated[str, typer.Option("--size-thresholds", metavar="PX,PX,...", help="Object-size buckets: sides "
                                       "in pixels of the squares whose areas bound them.")]
BandsOpt = Annotated[str, typer.Option("--boundary-thresholds", metavar="PX,PX,...", help="Boundary IoU band "
                                       "half-widths in pixels.")]
TsneOpt = Annotated[int, typer.Option("--tsne-pixels", metavar="N", min=0, help="Pixels per layer in the t-SNE sample (0: no "
                                      "t-SNE).")]
CamOpt = Annotated[int, typer.Option("--gradcam-images", metavar="N", min=0, help="Images with Grad-CAM maps (0: none).")]
BaneOpt = Annotated[int, typer.Option("--bane-images", metavar="N", min=0, help="Images drawn with BANE's views on the page.")]
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Seed of the pixel and image samples.")]


@app.command()
def analyze(ctx: typer.Context, target: TargetArg, split: SplitOpt = None, out_dir: OutOpt = None,
            overrides: SetOpt = None, sizes: SizesOpt = "16,32,96", bands: BandsOpt = "3,10,20",
            tsne_pixels: TsneOpt = 600, gradcam_images: CamOpt = 2, bane_images: BaneOpt = 2, seed: SeedOpt = 0,
            data_root: DataRootOpt = None, device: DeviceOpt = None, debug: DebugOpt = False) -> None:
    """The papers' analyses on one evaluation pass: IoU of head / mid / tail classes, mIoU by object size,
    boundary IoU at several band widths, Grad-CAM per class, t-SNE of each tapped layer, and the
    similarity of misclassified pixels to the anchors by their distance from the error boundary.

    Writes analysis.json, analysis.md, CSV tables, figures and one self-contained report.html. Over an
    ablation folder every run is analysed and the differences to the reference are shown per seed and
    on average. Interrupted? Run the same command again: finished analyses are kept.
    """
    from contextrast_cli.evaluation.analyses.run import AnalysisSettings
    from contextrast_cli.experiments.analyze import AnalyzeSpec, analyze as run_analysis

    with guarded(ctx, debug), progress() as bar:
        settings = AnalysisSettings(sides=parse_list(sizes, int, "--size-thresholds"),
                                    bands=parse_list(bands, int, "--boundary-thresholds"), tsne_pixels=tsne_pixels,
                                    gradcam_images=gradcam_images, seed=seed)
        spec = AnalyzeSpec(target, out_dir, split, checked_sets(overrides, EVAL_KEYS, "analyze"), data_root, device,
                           settings, bane_images,
                           invocation(ctx))
        task = bar.add_task("analysing", total=None)
        page = run_analysis(spec, say=lambda text: err.print(f"[bold]analyze[/] {text}"),
                            on_batch=lambda i, n: bar.update(task, completed=i, total=n))
    out.print(f"[bold green]done[/]: {page}, with analysis.json and analysis.md beside it")
