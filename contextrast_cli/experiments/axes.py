"""What an ablation varies: axes ``KEY=V1,V2,...`` over any config key, their grid of variants,
and the run folders' names.

Values are written as for ``--set`` (YAML), so lists work: ``contrast.layers=[4],[3,4],[1,2,3,4]``
splits at the commas outside brackets. The first value of each axis is the reference; the
first variant of the grid (every axis at its first value) is the reference of the paired
differences.
"""

import itertools
import re
from dataclasses import dataclass

from contextrast_cli.errors import ConfigError

SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")  # "+" kept: contextrast++


@dataclass(frozen=True)
class Axis:
    """One varied key and its values (YAML text, as written)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One combination of axis values: ``settings`` ((key, value) pairs) and its names."""

    settings: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """How tables name it: the value alone for ``contrast.method``, else ``key=value`` pairs."""
        if len(self.settings) == 1 and self.settings[0][0] == "contrast.method":
            return self.settings[0][1]
        return ", ".join(f"{key}={value}" for key, value in self.settings)

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings]

    @property
    def tags(self) -> dict[str, str]:
        """Tracker tags: ``axis.<key>`` -> value."""
        return {f"axis.{key}": value for key, value in self.settings}


def split_values(text: str) -> list[str]:
    """``0.25,0.5`` -> ['0.25', '0.5']; ``[4],[3,4]`` -> ['[4]', '[3,4]'] (commas inside brackets stay)."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += 1 if char in "[{" else -1 if char in "]}" else 0
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_axis(text: str) -> Axis:
    """``--vary KEY=V1,V2,...`` -> Axis.

    Raises:
        ConfigError: no ``=``, an empty value, fewer than two values, or a value given twice.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    values = split_values(raw) if sep else []
    if not key or not sep or any(not v for v in values):
        raise ConfigError(f"--vary {text!r}: expected KEY=V1,V2,... such as contrast.bane.ratio=0.25,0.5,1.0 "
                          f"or contrast.layers=[4],[3,4],[1,2,3,4]")
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(f"--vary {text!r}: give two or more different values (the first is the reference)")
    return Axis(key, tuple(values))


def grid(axes: list[Axis]) -> list[Variant]:
    """Every combination of the axes' values, the reference (all first values) first.

    Raises:
        ConfigError: a key varied twice, or no axis.
    """
    keys = [axis.key for axis in axes]
    if not axes or len(set(keys)) != len(keys):
        raise ConfigError(f"--vary: give each key once, got {', '.join(keys) or 'none'}")
    return [Variant(tuple(zip(keys, combo))) for combo in itertools.product(*(axis.values for axis in axes))]


def folder_names(variants: list[Variant], seeds: tuple[int, ...]) -> dict[tuple[Variant, int], str]:
    """Run folder per (variant, seed), filesystem-safe and unique: ``contrast.bane.ratio=0.25-seed0``,
    ``contrast.layers=3_4-seed1``, grids joined by ``+``; a ``contrast.method`` ablation keeps the
    short ``<method>-seed<k>``."""
    base = {}
    for variant in variants:
        method_only = len(variant.settings) == 1 and variant.settings[0][0] == "contrast.method"
        parts = [variant.label] if method_only else [f"{key}={value}" for key, value in variant.settings]
        safe = (SAFE.sub("_", part.replace(" ", "")).strip("_").replace("=_", "=") for part in parts)
        base[variant] = "+".join(safe)
    names, seen = {}, {}
    for variant in variants:
        stem = base[variant]
        count = seen[stem] = seen.get(stem, 0) + 1
        unique = stem if count == 1 else f"{stem}-{count}"
        for seed in seeds:
            names[(variant, seed)] = f"{unique}-seed{seed}"
    return names
