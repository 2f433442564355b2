"""Raw config sources: YAML with line numbers, ``--set`` overrides, and provenance.

A merged config remembers, for every key path, which file line or override set
it, so a validation error can say where to fix it.
"""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from contextrast_cli.errors import ConfigError

KeyPath = tuple[str, ...]


class Sources:
    """Key path -> human-readable origin (``presets/toy.yaml:12``, ``--set a.b=1``)."""

    def __init__(self) -> None:
        self._origins: dict[KeyPath, str] = {}

    def record(self, key: KeyPath, origin: str) -> None:
        """Remember that ``origin`` set ``key`` (later records win)."""
        self._origins[key] = origin

    def origin(self, loc: tuple[str, ...]) -> str:
        """The origin of the longest recorded prefix of ``loc``."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self._origins:
                return self._origins[loc[:end]]
        return "config"


def load_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Read a YAML mapping and the 1-based line of every key path in it.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a config file must be a mapping of sections "
                          f"(data:, model:, train: ...), got {type(data).__name__}")
    lines: dict[KeyPath, int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = prefix + (str(key_node.value),)
        lines[key] = key_node.start_mark.line + 1
        _collect_lines(value_node, key, lines)


def parse_override(text: str, option: str = "--set") -> tuple[KeyPath, Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value.

    Args:
        option: the command-line option that gave it, for the error (``--set``, ``--vary``).

    Raises:
        ConfigError: no ``=``, an empty key part, or a value that is not YAML.
    """
    key, sep, raw = text.partition("=")
    parts = tuple(key.strip().split("."))
    if not sep or not all(parts):
        raise ConfigError(f"{option} {text!r}: expected key.path=value, e.g. {option} train.iterations=100")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"{option} {text!r}: the value is not valid YAML; quote it") from None
    return parts, value


def merge(
    into: dict[str, Any],
    update: dict[str, Any],
    sources: Sources,
    origin: Callable[[KeyPath], str],
    prefix: KeyPath = (),
) -> None:
    """Deep-merge ``update`` into ``into``; mappings merge, anything else replaces.

    ``origin(key_path)`` names where each merged key came from.
    """
    for key, value in update.items():
        path = prefix + (str(key),)
        sources.record(path, origin(path))
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value, sources, origin, path)
        else:
            into[key] = copy.deepcopy(value)
            if isinstance(value, dict):
                _record_all(value, path, sources, origin)


def _record_all(value: dict[str, Any], prefix: KeyPath, sources: Sources,
                origin: Callable[[KeyPath], str]) -> None:
    for key, child in value.items():
        path = prefix + (str(key),)
        sources.record(path, origin(path))
        if isinstance(child, dict):
            _record_all(child, path, sources, origin)
