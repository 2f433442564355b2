"""The Typer application, its shared options, and the one place errors become messages and exit codes."""

import contextlib
import inspect
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from contextrast_cli import __version__
from contextrast_cli.cli.options import (  # noqa: F401  (the shared options, also importable from here)
    CHECKPOINT_HELP, AmpOpt, BatchSizeOpt, CheckpointOpt, ConfigOpt, DataRootOpt, DebugOpt, DeviceOpt, PresetOpt,
    RunsDirOpt, SetOpt, SplitOpt, checked_sets, out_option)
from contextrast_cli.errors import ConfigError, ContextrastError, first_line

EXIT_CODES = ("Exit codes: 0 done, 1 failure, 2 bad input (config, data, checkpoint), 3 the loss diverged, "
              "130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM; a stopped training saved last.pt.")


def reflow(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line (rich help keeps the source's line breaks, which
    come out ragged at any width other than the source's)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


class _Tidy:
    """Help as people read it: flags without a type placeholder (Typer shows ``<bool>`` as if they
    took a value) and paragraphs reflowed to the terminal."""

    def format_help(self, ctx, formatter) -> None:
        for param in self.get_params(ctx):
            if isinstance(param, TyperOption) and param.is_flag:
                param.metavar = ""  # Typer shows an option's metavar instead of its type
                if not isinstance(param.show_default, str):  # a computed default ("eval.flip") is shown
                    param.show_default = False  # "[default: no-force]": the help says what the flag does
        return super().format_help(ctx, formatter)


class Command(_Tidy, TyperCommand):
    """A ``contextrast`` command."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)  # also what a group lists as the command's short help


class Group(_Tidy, TyperGroup):
    """A ``contextrast`` command group."""


class App(typer.Typer):
    """``typer.Typer`` whose commands are ``Command``s."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(name="contextrast", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
          rich_markup_mode="rich", epilog=EXIT_CODES, cls=Group,
          help="Train semantic segmentation networks with contextual contrastive learning.")
presets_app = App(no_args_is_help=False, invoke_without_command=True, cls=Group)
prepare_app = App(no_args_is_help=True, cls=Group)
app.add_typer(presets_app, name="presets")
app.add_typer(prepare_app, name="prepare-data")

out = Console()
err = Console(stderr=True, soft_wrap=True)

def renamed(new_value, old_value, old: str, new: str):
    """The value of an option given under its old, hidden spelling (with a note), else the new one's."""
    if old_value is None:
        return new_value
    err.print(f"[yellow]note:[/] {old} is now {new}; the old spelling goes in the next release")
    if new_value is not None and new_value != old_value:
        raise ConfigError(f"{old} and {new} are the same option with different values; give {new} once")
    return old_value


@contextlib.contextmanager
def guarded(ctx: typer.Context, debug: bool = False):
    """Turn library errors into one red line and their exit code (tracebacks with --debug)."""
    debug = debug or bool((ctx.find_root().obj or {}).get("debug"))
    try:
        yield
    except ContextrastError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except typer.BadParameter as exc:  # an option's value, parsed inside the command: one line too
        hint = exc.param_hint if isinstance(exc.param_hint, str) else "option"
        err.print(f"[bold red]error:[/] {escape(hint)}: {escape(exc.message)}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # an internal failure: keep it to one line unless --debug
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(first_line(exc))}"
                  f" (re-run with --debug for the traceback)")
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"contextrast {__version__}")
        raise typer.Exit()


@app.callback()
def root(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
         debug: DebugOpt = False) -> None:
    """Contextrast: CCL + BANE pixel contrastive learning for semantic segmentation."""
    ctx.obj = {"debug": debug}


def existing(*targets: Path, recursive: bool = True) -> dict[Path, tuple[int, int]]:
    """The files a command may replace, as they are now: each target that is a file, and the files
    below each target that is a folder (with ``recursive``; else those directly in it), with their
    identity (inode, modification time), which a write-then-rename changes."""
    found = {}
    for target in map(Path, targets):
        files = [target] if target.is_file() else sorted(target.rglob("*") if recursive else target.iterdir()) \
            if target.is_dir() else []
        found.update({path: _identity(path) for path in files if path.is_file()})
    return found


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def note_replaced(before: dict[Path, tuple[int, int]]) -> list[Path]:
    """The overwrite rule, said in one line: a command replaces the outputs it writes again (except
    ``prepare-data``'s datasets, which need ``--force``), naming them; returns the replaced files."""
    replaced = [path for path, identity in before.items() if path.is_file() and _identity(path) != identity]
    if replaced:
        names = ", ".join(escape(str(path)) for path in replaced[:3]) + (", ..." if len(replaced) > 3 else "")
        count = f"{len(replaced)} existing files" if len(replaced) > 1 else "an existing file"
        err.print(f"[yellow]note:[/] replaced {count}: {names}", soft_wrap=True)
    return replaced


def plural(count: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def group_debug(ctx: typer.Context, debug: bool) -> None:
    """A group's ``--debug`` (``contextrast prepare-data --debug folder ...``): for every command below it."""
    root = ctx.find_root()
    root.obj = {**(root.obj or {}), "debug": bool((root.obj or {}).get("debug")) or debug}


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or not int(height) or not int(width):
        raise typer.BadParameter(f"expected HxW such as 120x160, got {text!r}", param_hint=option)
    return int(height), int(width)


def parse_list(text: str, kind, option: str) -> tuple:
    """``a,b,c`` -> a tuple of ``kind``."""
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected a comma-separated list such as {'0,1,2' if kind is int else '0.75,1.0'}, "
                                 f"got {text!r}", param_hint=option) from None
    if not values:
        raise typer.BadParameter("give at least one value", param_hint=option)
    return values


def pick_checkpoint(checkpoint: Path | None, runs_dir: Path) -> Path:
    """The checkpoint a command uses: ``--checkpoint`` (a run folder means its best.pt, else its
    last.pt with a note), or the newest best.pt under ``runs_dir`` (ablation runs included), with
    a note naming it and its run."""
    from contextrast_cli.train.runs import checkpoint_path, describe_checkpoint, newest_checkpoint

    if checkpoint is None:
        path = newest_checkpoint(runs_dir)
        err.print(f"[yellow]note:[/] no --checkpoint given: using {escape(str(path))}, the newest best.pt under "
                  f"{escape(str(runs_dir))}/ ({escape(describe_checkpoint(path))}); pass --checkpoint to choose")
        return path
    path, note = checkpoint_path(checkpoint)
    if note:
        err.print(f"[yellow]note:[/] {escape(note)}")
    return path
