"""What ``contextrast presets`` shows: the presets grouped by dataset, and a resolved config as
YAML with the schema's provenance marks (which values are the paper's, which are our defaults)
as comments. No torch.

The marks are read from the schema's field docs (``schema.py``): a parenthesis that mentions the
paper ("(paper: 0.5-2.0)", "(default, not in paper)") or a sentence that does ("Default, not in
paper."). A section's own doc marks its line (``optim:  # paper: momentum 0.9, ...``).
"""

import re
from typing import Any

import yaml
from pydantic import BaseModel

from contextrast_cli.config.resolve import list_presets, resolve_config
from contextrast_cli.config.schema import Config

PAREN = re.compile(r"\(([^()]*\bpaper[^()]*)\)")
SENTENCE = re.compile(r"(?:^|\.\s+)([^.]*\bnot in (?:the )?paper)\.?\s*$", re.IGNORECASE)
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")
HEADER = ("# Resolved; '# paper...' marks the paper's value of a field and '# ...not in paper' our default, "
          "as the schema's field docs record them.\n")


def grouped_presets() -> list[Config]:
    """Every preset resolved, grouped by ``data.dataset`` (groups in the dataset's name order); in a
    group, the preset named after the dataset first, then the others by name.

    Raises:
        ConfigError: a preset that does not validate.
    """
    configs = [resolve_config(preset=name) for name in list_presets()]
    return sorted(configs, key=lambda c: (c.data.dataset, c.name != c.data.dataset, c.name))


def paper_mark(doc: str | None) -> str | None:
    """The provenance note of a field or section doc ("paper: 0.5-2.0", "default, not in paper"), or None."""
    text = " ".join((doc or "").split())
    found = PAREN.search(text) or SENTENCE.search(text)
    if not found:
        return None
    note = found.group(1).strip()
    return note[:1].lower() + note[1:]


def _marks(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Key path -> provenance note, for every field (and sub-section) of ``model`` that has one."""
    marks = {}
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        sections = [a for a in getattr(info.annotation, "__args__", (info.annotation,))
                    if isinstance(a, type) and issubclass(a, BaseModel)]
        note = paper_mark(info.description) or (paper_mark(sections[0].__doc__) if sections else None)
        if note:
            marks[path] = note
        if sections:
            marks.update(_marks(sections[0], path))
    return marks


def annotated_yaml(cfg: Config) -> str:
    """``cfg.to_yaml()`` with a ``# <note>`` after every key the schema marks (loadable as it is:
    the notes are YAML comments)."""
    marks = _marks(Config)
    lines, stack = [], []
    for line in yaml.safe_dump(cfg.to_dict(), sort_keys=False, width=1 << 20).splitlines():  # no wrapped values
        match = KEY_LINE.match(line)
        if match:
            depth = len(match["indent"]) // 2
            stack[depth:] = [match["key"]]
            note = marks.get(tuple(stack))
            line = f"{line}  # {note}" if note else line
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def preset_row(cfg: Config) -> dict[str, Any]:
    """The columns ``presets list`` shows for a preset."""
    return {"dataset": cfg.data.dataset, "imagenet": "yes" if cfg.model.pretrained else "local file" if cfg.model.weights else "no",
            "description": cfg.description}
