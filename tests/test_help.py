"""Every command's --help reads well at 80 and 120 columns: no value placeholder on a flag, help
text on every option, the choices of every choice option, no ragged docstring lines."""

import pytest
import typer.main
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from contextrast_cli.cli import app

# options whose value is one of a few words: the help must list them
CHOICES = {"--mode": ("whole", "slide"), "--style": ("grid", "overlay"), "--quantize": ("int8",)}


def commands(group=None, path=()):
    """(command path, command) for every command and group, hidden aliases left out."""
    group = group or typer.main.get_command(app)
    yield path, group
    for name, command in group.commands.items() if isinstance(group, TyperGroup) else ():
        if not command.hidden:
            yield from commands(command, (*path, name)) if isinstance(command, TyperGroup) else [((*path, name), command)]


ALL = list(commands())


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in ALL}
    assert {"train", "evaluate", "export", "predict", "ablate", "visualize-boundaries", "presets show",
            "prepare-data folder", "prepare-data synthetic", "prepare-data camvid"} <= names


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "contextrast" for p, _ in ALL])
def test_every_option_has_help_and_every_choice_option_its_choices(path, command):
    for param in command.params:
        if isinstance(param, TyperOption) and not param.hidden:
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]}: no help text"
            for option, choices in CHOICES.items():
                if option in param.opts:
                    assert param.metavar == "|".join(choices), f"{option} must list {choices} in its help"


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "contextrast" for p, _ in ALL])
def test_help_renders_without_placeholders_on_flags_or_ragged_lines(path, command, columns):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= columns
    assert "<bool>" not in result.output
    assert "[default: boundary]" not in result.output and "[default: no-" not in result.output
    for option, choices in CHOICES.items():
        if any(option in p.opts for p in command.params if isinstance(p, TyperOption)):
            assert "|".join(choices) in result.output
    # ragged docstrings: a description line cut short while the next line goes on with the sentence
    text = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("│", "╭", "╰"))]
    short = [a for a, b in zip(text, text[1:]) if len(a) < columns * 0.6 and b[:1].islower() and not a.endswith(".")]
    assert short == [], short
