"""The options every command shares, each defined once: a new command gets them by reuse.

Conventions (checked over every command's help by ``tests/test_help.py``): value placeholders
are upper-case words (``DIR``, ``FILE``, ``PATH``, ``KEY=VALUE``, ``HxW``) or the choices
(``last|best``); a default is shown the one way Typer shows it, ``[default: ...]`` (a computed
one through ``show_default="..."``), never in the help sentence; help sentences start with a
capital; a switch that adds work is a plain flag (``--features``, ``--amp``).

A command that reads a config takes ``--set`` (``SetOpt``): ``train`` and ``ablate`` lay it over
the preset, the commands that read a checkpoint over the checkpoint's config, on the keys that do
not change the trained network (``checked_sets`` refuses the others in one line). A command that
writes files takes ``-o/--out`` (``out_option``).
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from contextrast_cli.errors import ConfigError

EVAL_KEYS = ("eval",)
"""What ``--set`` changes where a command rebuilds a trained network from its checkpoint."""
BANE_KEYS = ("contrast.bane", "contrast.layers", "contrast.max_negatives")
"""What ``--set`` changes in ``visualize-boundaries`` (the BANE settings it draws)."""

CHECKPOINT_HELP = ("Checkpoint file, or a run folder (its best.pt; its last.pt, with a note, before the first "
                   "validation).")
PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", metavar="NAME",
                                                  help="Preset name (see `contextrast presets list`).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE",
                                                   help="YAML file laid over the preset.")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE", help="Override a config key, value as YAML: eval.scales=[1.0,1.5] "
    "(repeatable). Laid over the preset, or over a checkpoint's config where the command reads one.")]
DataRootOpt = Annotated[Optional[Path], typer.Option(
    "--data-root", metavar="DIR", help="Prepared dataset folder; it must exist (see `contextrast prepare-data`).",
    show_default="data.root, else data/DATASET")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", metavar="DEVICE", help="Device: auto (CUDA when available), cpu, cuda or cuda:N.", show_default="auto")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, metavar="N",
                                                     help="Images per step (overrides the config's batch size).",
                                                     show_default="the config's")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision on a GPU (bfloat16 where native, else "
                                      "float16); without it, float32.")]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Folder of run folders "
                                          "(RUNS_DIR/PRESET/TIME/), searched when no --checkpoint is given.")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", metavar="PATH", help=CHECKPOINT_HELP,
                                                       show_default="the newest best.pt under --runs-dir")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", metavar="SPLIT", help="Prepared split to evaluate on.",
                                                 show_default="the config's eval.split")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


def out_option(help: str, metavar: str = "DIR", default: str | bool = True):
    """``-o/--out``, the main output of a command (a folder, or a FILE), with its help; ``default``:
    the text of a computed default (True: the option's own default value, if any)."""
    return Annotated[Optional[Path], typer.Option("--out", "-o", metavar=metavar, help=help, show_default=default)]


def checked_sets(overrides: list[str] | None, allowed: tuple[str, ...], command: str) -> tuple[str, ...]:
    """``--set`` values whose keys lie under ``allowed`` (``eval``, ``contrast.bane`` ...).

    Raises:
        ConfigError: a key the command cannot change (it would describe another network), or a
            malformed ``KEY=VALUE``, named with what does apply.
    """
    from contextrast_cli.config.sources import parse_override

    for text in overrides or ():
        key, _ = parse_override(text)
        if not any(".".join(key) == prefix or ".".join(key).startswith(prefix + ".") for prefix in allowed):
            keys = ", ".join(f"{prefix}.*" if prefix == "eval" else prefix for prefix in allowed)
            raise ConfigError(f"--set {text}: {command} rebuilds the trained network from its checkpoint, so "
                              f"{key[0]}.* stays as trained; --set applies to {keys} here")
    return tuple(overrides or ())
