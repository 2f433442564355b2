"""``contextrast presets`` and ``contextrast prepare-data``."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from contextrast_cli.cli.app import DebugOpt, SetOpt, guarded, out, parse_size, prepare_app, presets_app, progress

OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Prepared dataset folder to create.")]
ForceOpt = Annotated[bool, typer.Option(help="Replace an existing --out folder.")]


@presets_app.callback()
def presets_list(ctx: typer.Context, debug: DebugOpt = False) -> None:
    """List the presets with their one-line descriptions."""
    if ctx.invoked_subcommand is not None:
        return
    from contextrast_cli.config import list_presets, resolve_config

    table = Table("preset", "description", title="presets")
    with guarded(ctx, debug):
        for name in list_presets():
            table.add_row(name, resolve_config(preset=name).description)
    out.print(table)


@presets_app.command("show")
def presets_show(ctx: typer.Context, name: str, overrides: SetOpt = None, debug: DebugOpt = False) -> None:
    """Print preset NAME fully resolved (defaults filled in) as YAML."""
    from contextrast_cli.config import resolve_config

    with guarded(ctx, debug):
        print(resolve_config(preset=name, overrides=overrides or []).to_yaml(), end="")


def _print_dataset(prepared) -> None:
    table = Table("split", "images", title=f"{prepared.name}: {prepared.root}")
    for split, count in prepared.splits.items():
        table.add_row(split, str(count))
    out.print(table)
    freq = prepared.meta.get("class_frequencies", {})
    if freq:
        out.print("train pixel share: " + ", ".join(f"{k} {v:.1%}" for k, v in freq.items()))


@prepare_app.command("camvid")
def prepare_camvid(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option(help="SegNet CamVid folder (train/, trainannot/, val/, ...).")],
    out_dir: OutDirOpt = Path("data/camvid"),
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert the SegNet CamVid folder (void 11 -> ignore 255)."""
    from contextrast_cli.data.camvid import convert_camvid, find_camvid_splits

    with guarded(ctx, debug), progress() as bar:
        total = sum(len(p) for p in find_camvid_splits(source).values())
        task = bar.add_task("converting CamVid", total=total)
        prepared = convert_camvid(source, out_dir, force=force, on_sample=lambda _: bar.advance(task))
    _print_dataset(prepared)


@prepare_app.command("synthetic")
def prepare_synthetic_cmd(
    ctx: typer.Context,
    out_dir: OutDirOpt = Path("data/synthetic"),
    num_train: Annotated[int, typer.Option(min=1)] = 200,
    num_val: Annotated[int, typer.Option(min=1)] = 40,
    size: Annotated[str, typer.Option(help="Scene size HxW.")] = "120x160",
    seed: int = 0,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Draw procedural street scenes (deterministic per seed)."""
    from contextrast_cli.config import SyntheticData
    from contextrast_cli.data.build import prepare_synthetic

    params = SyntheticData(num_train=num_train, num_val=num_val, size=parse_size(size), seed=seed)
    with guarded(ctx, debug), progress() as bar:
        task = bar.add_task("drawing scenes", total=num_train + num_val)
        prepared = prepare_synthetic(out_dir, params, force=force, on_sample=lambda _: bar.advance(task))
    _print_dataset(prepared)
