"""Preset discovery and config resolution.

Precedence, lowest first: preset < ``--config`` file < ``--set key=value`` <
explicit command-line flags. Every problem is reported with its field path and
the place (file and line, or the override) that set it. No torch import here.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from contextrast_cli.config.schema import Config, EvalConfig
from contextrast_cli.config.sources import Sources, load_yaml, merge, parse_override
from contextrast_cli.errors import ConfigError


def presets_dir() -> Path:
    """The folder holding the preset YAMLs (repo checkout or installed package)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "presets", package.parent / "presets"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"no presets folder found next to {package}; reinstall contextrast")


def list_presets() -> dict[str, Path]:
    """Preset name -> YAML path, sorted by name."""
    return {path.stem: path for path in sorted(presets_dir().glob("*.yaml"), key=lambda path: path.stem)}


def preset_path(name: str, alternative: str = "or pass your own file with --config FILE.yaml") -> Path:
    """The YAML of preset ``name``; a ConfigError listing the presets (and ``alternative``) on a miss."""
    presets = list_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(presets)}"
                          + (f" ({alternative})" if alternative else ""))
    return presets[name]


def resolve_config(
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: list[str] = (),
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
    varied: Sequence[str] = (),
) -> Config:
    """Merge the sources in precedence order and validate once.

    Args:
        preset: name of a preset in ``presets/``.
        config_file: a YAML file laid over the preset (or standing alone).
        overrides: ``key.path=value`` strings; values are parsed as YAML.
        flags: dotted key -> value from explicit command-line flags (None values skipped).
        base: a starting dict (a checkpoint's resolved config when resuming).
        varied: ``key.path=value`` strings of an ablation's ``--vary`` axes, laid over ``overrides``
            and named ``--vary ...`` in errors.

    Raises:
        ConfigError: listing every problem with field path and source.
    """
    if preset is None and config_file is None and base is None:
        raise ConfigError("no configuration given: pass --preset NAME or --config FILE.yaml "
                          "(see `contextrast presets`)")
    data: dict[str, Any] = {}
    sources = Sources()
    if base is not None:
        merge(data, base, sources, lambda path: "the checkpoint's config")
    for path in ([preset_path(preset)] if preset else []) + ([config_file] if config_file else []):
        doc, lines = load_yaml(path)
        merge(data, doc, sources, lambda key, p=path, ln=lines: f"{p}:{ln.get(key, 1)}")
    if preset and config_file is None and "name" not in data:
        data["name"] = preset
    for option, texts in (("--set", overrides), ("--vary", varied)):
        for text in texts:
            key, value = parse_override(text, option)
            merge(data, _nest(key, value), sources, lambda _, o=option, t=text: f"{o} {t}")
    for dotted, value in (flags or {}).items():
        if value is not None:
            merge(data, _nest(tuple(dotted.split(".")), value), sources,
                  lambda _, d=dotted: f"--{d.split('.')[-1].replace('_', '-')}")
    if config_file is not None and "name" not in data:
        data["name"] = config_file.stem
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, sources)) from None


def _nest(key: tuple[str, ...], value: Any) -> dict[str, Any]:
    for part in reversed(key):
        value = {part: value}
    return value


SHAPE_HINTS = {  # pydantic error type -> what the value should look like
    "tuple_type": "expected a list such as [1, 2]",
    "list_type": "expected a list such as [1, 2]",
    "dict_type": "expected a mapping such as {{key: value}}",
    "model_type": "expected a section: {{key: value, ...}}, or set its keys one by one ({path}.key=value)",
    "model_attributes_type": "expected a section: {{key: value, ...}}, or set its keys one by one ({path}.key=value)",
}


def _format_errors(exc: ValidationError, sources: Sources) -> str:
    """``source: field.path: message (got ..., expected ...)``, one line per problem, after
    ``invalid configuration:`` on the same line when there is only one."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        dotted = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = f"unknown key; valid keys here: {', '.join(_valid_keys(loc[:-1]))}"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] in SHAPE_HINTS:
            message = f"{SHAPE_HINTS[error['type']].format(path=dotted)}, got {_short(error.get('input'))}"
        elif error["type"] in ("too_long", "too_short"):
            message = f"{message.split(' after validation')[0]}, got {_short(error.get('input'))}"
        message = message.removeprefix("Value error, ")
        lines.append(f"{sources.origin(loc)}: {dotted}: {message}")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _valid_keys(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        if part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)



def with_overrides(cfg: Config, overrides: Sequence[str] = (), flags: dict[str, Any] | None = None) -> Config:
    """``cfg`` (a checkpoint's config) with ``--set`` overrides and explicit flags laid over it,
    validated and reported as ``train``'s are (``resolve_config`` with ``base``).

    Raises:
        ConfigError: a bad override or value, naming the ``--set`` or flag that gave it.
    """
    if not overrides and not any(v is not None for v in (flags or {}).values()):
        return cfg
    return resolve_config(overrides=list(overrides), flags=flags, base=cfg.to_dict())


def with_eval(cfg: Config, overrides: dict[str, Any], sets: Sequence[str] = ()) -> Config:
    """``cfg`` with ``eval.*`` settings replaced: ``sets`` (``--set eval.key=value``), then the
    command-line evaluation options ``overrides`` (``{"scales": ...}``), validated.

    Raises:
        ConfigError: an invalid value, naming the option or ``--set`` that gave it.
    """
    return with_overrides(cfg, sets, {f"eval.{key}": value for key, value in overrides.items()})


def eval_settings(settings: dict[str, Any], flags: dict[str, Any] | None = None,
                  sets: Sequence[str] = ()) -> EvalConfig:
    """A validated ``EvalConfig`` from plain ``settings`` (an ONNX sidecar's), with ``sets``
    (``--set eval.key=value``) and then ``flags`` (command-line options) laid over; errors name
    the option (``--<key>``) or ``--set`` that gave a value.

    Raises:
        ConfigError: an invalid value, naming the ``eval`` field; a ``--set`` outside ``eval.*``.
    """
    data: dict[str, Any] = {}
    sources = Sources()
    merge(data, {"eval": settings}, sources, lambda key: f"--{key[-1].replace('_', '-')}")
    for text in sets:
        key, value = parse_override(text)
        if key[0] != "eval":
            raise ConfigError(f"--set {text}: an exported graph has evaluation settings only; give eval.* keys")
        merge(data, _nest(key, value), sources, lambda _, t=text: f"--set {t}")
    merge(data, {"eval": flags or {}}, sources, lambda key: f"--{key[-1].replace('_', '-')}")
    try:
        return _EvalOnly.model_validate(data).eval
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, sources)) from None


class _EvalOnly(BaseModel):
    """The ``eval`` section alone, so that errors carry their ``eval.*`` path."""

    eval: EvalConfig
