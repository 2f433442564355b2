"""``contextrast presets`` and ``contextrast prepare-data``."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from contextrast_cli.cli.app import (DebugOpt, SetOpt, group_debug, guarded, out, out_option, parse_size, prepare_app,
                                     presets_app, progress)

OutDirOpt = out_option("Prepared dataset folder to create.")
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing --out folder (a prepared dataset is "
                                        "an expensive input: it is never replaced without this flag).")]


@presets_app.callback()
def presets(ctx: typer.Context, debug: DebugOpt = False) -> None:
    """List the presets (`presets list`, or `presets` alone), or show one resolved (`presets show NAME`)."""
    group_debug(ctx, debug)
    if ctx.invoked_subcommand is None:
        presets_list(ctx)


@presets_app.command("list")
def presets_list(ctx: typer.Context, debug: DebugOpt = False) -> None:
    """List the presets grouped by dataset: ImageNet initialisation and description."""
    from contextrast_cli.config.catalogue import preset_row, grouped_presets

    with guarded(ctx, debug):
        configs = grouped_presets()
    table = Table("preset", "ImageNet", "description", title="presets, by dataset")
    table.columns[0].no_wrap = True
    for index, cfg in enumerate(configs):
        row = preset_row(cfg)
        if index == 0 or configs[index - 1].data.dataset != cfg.data.dataset:
            if index:
                table.add_section()
            table.add_row(f"[bold]{row['dataset']}[/]", "", "")
        table.add_row(f"  {cfg.name}", row["imagenet"], row["description"])
    out.print(table)
    out.print("ImageNet: model.pretrained (the encoder's ImageNet weights, through timm's / Hugging Face's / "
              "torchvision's cache, HF_HOME; offline: --set model.pretrained=false). Show one: contextrast presets show NAME")


@presets_app.command("show")
def presets_show(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="A preset name.")],
                 overrides: SetOpt = None, debug: DebugOpt = False) -> None:
    """Print preset NAME fully resolved (defaults filled in) as YAML, each value the paper states marked."""
    from contextrast_cli.config import preset_path, resolve_config
    from contextrast_cli.config.catalogue import annotated_yaml

    with guarded(ctx, debug):
        preset_path(name, alternative="see `contextrast presets list`")
        print(annotated_yaml(resolve_config(preset=name, overrides=overrides or [])), end="")


@prepare_app.callback()
def prepare_data(ctx: typer.Context, debug: DebugOpt = False) -> None:
    """Convert a dataset into the prepared layout."""
    group_debug(ctx, debug)


def _print_dataset(prepared) -> None:
    table = Table("split", "images", title=f"{prepared.name}: {prepared.root}")
    for split, count in prepared.splits.items():
        table.add_row(split, str(count))
    out.print(table)
    freq = prepared.meta.get("class_frequencies", {})
    if freq:
        shares = sorted(freq.items(), key=lambda kv: -kv[1])
        columns = 3 if len(shares) > 20 else 1
        rows = -(-len(shares) // columns)
        share_table = Table(*(["class", "share"] * columns), title="train pixel share per class")
        for row in range(rows):
            cells = []
            for column in range(columns):
                index = column * rows + row
                name, value = shares[index] if index < len(shares) else ("", None)
                cells += [name, "" if value is None else f"{value:.2%}"]
            share_table.add_row(*cells)
        out.print(share_table)


def _run(ctx: typer.Context, debug: bool, plan_of, out_dir: Path, force: bool) -> None:
    """Plan (find every pair), then convert with a progress bar, then print the summary."""
    from contextrast_cli.data.convert import convert

    with guarded(ctx, debug), progress() as bar:
        plan = plan_of()
        task = bar.add_task(f"converting {plan.name}", total=plan.count)
        prepared = convert(plan, out_dir, force=force, on_sample=lambda _: bar.advance(task))
    _print_dataset(prepared)


def _converter_command(name: str, source_help: str):
    def command(ctx: typer.Context,
                source: Annotated[Path, typer.Option(metavar="DIR", help=source_help)],
                out_dir: OutDirOpt = Path("data") / name,
                force: ForceOpt = False,
                debug: DebugOpt = False) -> None:
        from contextrast_cli.data.converters import SOURCES

        _run(ctx, debug, lambda: SOURCES[name][0](source), out_dir, force)

    command.__doc__ = f"Convert {name} into the prepared layout (validates every pair; see the README)."
    return command


def _register_converters() -> None:
    from contextrast_cli.data.converters import SOURCES

    for name, (_, source_help) in SOURCES.items():
        prepare_app.command(name)(_converter_command(name, f"{source_help[:1].upper()}{source_help[1:]}."))


_register_converters()


@prepare_app.command("folder")
def prepare_folder(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option(metavar="DIR", help="Folder of images (or of SPLIT/ sub-folders).")],
    labels: Annotated[Path, typer.Option(metavar="DIR", help="Folder of label PNGs named IMAGE_STEM + SUFFIX + .png "
                                         "(same sub-folders).")],
    classes: Annotated[Path, typer.Option(metavar="FILE", help="One class per line in id order, optionally with its "
                                          "colour R,G,B: `traffic light 250,170,30`.")],
    out_dir: OutDirOpt = Path("data/folder"),
    split_file: Annotated[Optional[list[str]], typer.Option(
        "--split-file", metavar="SPLIT=FILE", help="A file listing that split's image names, one per line "
        "(repeatable).")] = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, metavar="F", help="Without split files or "
                                                "sub-folders: this share of the images, drawn with --seed, becomes "
                                                "val.")] = 0.1,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the --val-fraction draw.")] = 0,
    ignore_index: Annotated[int, typer.Option(min=0, max=255, metavar="N", help="Index masks: the unlabelled value "
                                              "(not a class id).")] = 255,
    reduce_zero_label: Annotated[bool, typer.Option(
        "--reduce-zero-label", help="Index masks: 0 means unlabelled, class k is stored as k+1.")] = False,
    ignore_color: Annotated[Optional[str], typer.Option(metavar="R,G,B", help="Colour masks: the colour of "
                                                        "unlabelled pixels.")] = None,
    label_suffix: Annotated[str, typer.Option(metavar="SUFFIX", help="Label file = IMAGE_STEM + SUFFIX + .png.")] = "",
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert your own labelled images (index or RGB colour-coded masks) into the prepared layout."""
    from contextrast_cli.data.folder import FolderOptions, plan_folder
    from contextrast_cli.errors import ConfigError

    def plan():
        files = {}
        for item in split_file or []:
            split, sep, path = item.partition("=")
            if not sep or not split or not path:
                raise ConfigError(f"--split-file {item!r}: expected SPLIT=FILE, e.g. --split-file val=val.txt")
            files[split] = Path(path)
        colour = None
        if ignore_color is not None:
            parts = ignore_color.split(",")
            if len(parts) != 3 or not all(p.strip().isdigit() and int(p) < 256 for p in parts):
                raise ConfigError(f"--ignore-color {ignore_color!r}: expected R,G,B in 0-255, e.g. 0,0,0")
            colour = tuple(int(p) for p in parts)
        return plan_folder(FolderOptions(images, labels, classes, files or None, val_fraction, seed, ignore_index,
                                         reduce_zero_label, colour, label_suffix))

    _run(ctx, debug, plan, out_dir, force)
@prepare_app.command("synthetic")
def prepare_synthetic_cmd(
    ctx: typer.Context,
    out_dir: OutDirOpt = Path("data/synthetic"),
    num_train: Annotated[int, typer.Option(min=1, metavar="N", help="Training scenes.")] = 200,
    num_val: Annotated[int, typer.Option(min=1, metavar="N", help="Validation scenes.")] = 40,
    size: Annotated[str, typer.Option(metavar="HxW", help="Scene size.")] = "120x160",
    seed: Annotated[int, typer.Option(metavar="N", help="Generator seed: the scenes are a pure function of (seed, "
                                      "index).")] = 0,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Draw procedural street scenes (deterministic per seed)."""
    from contextrast_cli.config import SyntheticData
    from contextrast_cli.data.locate import prepare_synthetic

    with guarded(ctx, debug), progress() as bar:
        params = SyntheticData(num_train=num_train, num_val=num_val, size=parse_size(size), seed=seed)
        task = bar.add_task("drawing scenes", total=num_train + num_val)
        prepared = prepare_synthetic(out_dir, params, force=force, on_sample=lambda _: bar.advance(task))
    _print_dataset(prepared)
