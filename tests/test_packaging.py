"""The package metadata ships every subpackage and the presets."""

import subprocess
import sys
import tomllib
from pathlib import Path

from contextrast_cli import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "contextrast_cli").rglob("__init__.py")}
    assert on_disk | {"contextrast_cli.presets"} == listed
    assert config["package-dir"]["contextrast_cli.presets"] == "presets"


def test_console_script_and_module_run_the_cli():
    """The installed ``contextrast`` script and ``python -m contextrast_cli`` both reach the app."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["contextrast"] == "contextrast_cli.cli:main"
    script = Path(sys.executable).parent / "contextrast"
    for command in ([str(script), "--version"], [sys.executable, "-m", "contextrast_cli", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == f"contextrast {__version__}", done.stderr
