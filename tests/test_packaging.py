"""The package metadata ships every subpackage and the presets."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "contextrast_cli").rglob("__init__.py")}
    assert on_disk | {"contextrast_cli.presets"} == listed
    assert config["package-dir"]["contextrast_cli.presets"] == "presets"


def test_console_script_points_at_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["contextrast"] == "contextrast_cli.cli:main"
    from contextrast_cli.cli import main

    assert callable(main)
