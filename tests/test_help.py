"""Every command's --help reads well at 80 and 120 columns: no value placeholder on a flag, help
text on every option, the choices of every choice option, no ragged docstring lines; and the
commands speak one language (issue 37), checked as rules over every command, so that a new command
is held to them too:

- placeholders are upper-case words (DIR, FILE, PATH, KEY=VALUE, HxW, S1,S2,...) or the choices
  (whole|slide), never ``<path>``; help sentences start with a capital;
- a default is shown the one way Typer shows it, ``[default: ...]``, never inside the sentence;
- the shared options (``cli/options.py``) read the same everywhere; ``--features`` is a plain flag;
- every command and group takes ``--debug``; every command that reads a config takes ``--set``;
  every command that writes files takes ``-o/--out``; ``--device`` wherever a network runs,
  ``--batch-size`` wherever images are batched, ``--amp`` wherever a checkpoint's predictions over
  many images are made; the ``visualize`` alias is listed.
"""

import re

import pytest
import typer.main
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from contextrast_cli.cli import app

# options whose value is one of a few words: the help must list them
CHOICES = {"--mode": ("whole", "slide"), "--style": ("grid", "overlay"), "--quantize": ("int8",),
           "--score": ("last", "best")}


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


# commands (space-joined paths) that are exempt from a rule, and why
NO_OUT = {"train": "writes its run folder under --runs-dir", "presets list": "prints only",
          "presets show": "prints only"}
NO_SET = {"presets list": "no config", "prepare-data": "no config"}  # prefix match: every converter
NO_DEVICE = {"export": "traces and verifies on the CPU (onnxruntime)"}
BATCHED = {"train", "ablate", "evaluate", "predict"}
AMP = {"evaluate", "predict"}
SHARED = ("--set", "--device", "--debug", "--data-root", "--checkpoint", "--amp", "--preset", "--config")
PLACEHOLDER = re.compile(r"^\[?[A-Z][A-Z0-9_]*(?:[=x,./|+-][A-Z0-9_]*)*\]?(?:\.\.\.)?$")
ANGLED = re.compile(r"<[A-Za-z_ -]+>")

COMMANDS = [(path, command) for path, command in ALL if path and not isinstance(command, TyperGroup)]


def visible(command):
    return [p for p in command.params if not getattr(p, "hidden", False)]


def options(command) -> dict[str, TyperOption]:
    return {name: p for p in visible(command) if isinstance(p, TyperOption) for name in (*p.opts, *p.secondary_opts)}


def exempt(path, table) -> bool:
    name = " ".join(path)
    return any(name == key or name.startswith(key + " ") for key in table)


def metavar(param, command) -> str:
    import click

    if isinstance(param, TyperOption):
        return param.display_type_rich(click.Context(command))
    return param.metavar or param.name.upper()


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "contextrast" for p, _ in ALL])
def test_placeholders_capitals_and_defaults_are_written_one_way(path, command):
    name = " ".join(path) or "contextrast"
    texts = [command.help or ""]
    for param in visible(command):
        texts.append(param.help or "")
        if isinstance(param, TyperOption) and param.is_flag:
            continue
        shown = metavar(param, command)
        choices = next((c for option, c in CHOICES.items() if isinstance(param, TyperOption) and option in param.opts),
                       None)
        assert shown == "|".join(choices) if choices else PLACEHOLDER.match(shown), (name, param.opts, shown)
        if isinstance(param, TyperOption):
            assert not re.search(r"\(default|default:", param.help or "", re.IGNORECASE), (name, param.opts)
    for text in texts:
        assert not ANGLED.search(text), (name, text)
        first = text.strip()[:1]
        assert not first.isalpha() or first.isupper(), (name, text[:60])


def test_shared_options_read_the_same_everywhere_and_features_is_a_flag():
    seen = {}
    for path, command in COMMANDS:
        found = options(command)
        for option in SHARED:
            if option in found:
                param = found[option]
                seen.setdefault(option, {})[" ".join(path)] = (param.help, tuple(param.opts), param.show_default)
        if "--features" in found:
            assert found["--features"].is_flag and not found["--features"].secondary_opts, path
        if "--out" in found:
            assert "-o" in found["--out"].opts, path
    for option, uses in seen.items():
        assert len(set(uses.values())) == 1, (option, uses)
    assert len(seen["--set"]) >= 6 and len(seen["--device"]) >= 5


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_takes_the_options_that_apply_to_it(path, command):
    found, name = options(command), " ".join(path)
    assert "--debug" in found, name
    assert exempt(path, NO_OUT) or {"--out", "-o"} <= set(found), f"{name}: writes files, so it takes -o/--out"
    assert exempt(path, NO_SET) or "--set" in found, f"{name}: reads a config, so it takes --set"
    runs_network = "--checkpoint" in found or "--preset" in found
    assert not runs_network or exempt(path, NO_DEVICE) or "--device" in found, name
    assert (path[-1] not in BATCHED) or "--batch-size" in found, name
    assert (path[-1] not in AMP) or "--amp" in found, name


def test_every_group_takes_debug_and_the_visualize_alias_is_listed():
    for path, command in ALL:
        if isinstance(command, TyperGroup):
            assert "--debug" in options(command), path
    listed = " ".join(invoke_help().split())
    assert "visualize " in listed and "visualize-boundaries" in listed


def invoke_help() -> str:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    return result.output.replace("│", " ")
