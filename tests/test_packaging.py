"""The package metadata ships every subpackage and the presets."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from contextrast_cli import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_ships_every_package_and_the_presets(tmp_path):
    """A non-editable build (the wheel pip installs from an sdist or index): setuptools' package
    discovery finds every package on disk, and the presets ship as contextrast_cli/presets/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["contextrast_cli*"]  # discovery, no list to forget
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("contextrast-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "contextrast_cli").rglob("__init__.py")}
    assert len(packages) >= 11 and {f"{package}/__init__.py" for package in packages} <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "contextrast_cli").rglob("*.py")}
    assert modules <= names
    presets = {f"contextrast_cli/presets/{p.name}" for p in (ROOT / "presets").glob("*.yaml")}
    assert len(presets) >= 10 and presets <= names


def test_console_script_and_module_run_the_cli():
    """The installed ``contextrast`` script and ``python -m contextrast_cli`` both reach the app."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["contextrast"] == "contextrast_cli.cli:main"
    script = Path(sys.executable).parent / "contextrast"
    for command in ([str(script), "--version"], [sys.executable, "-m", "contextrast_cli", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == f"contextrast {__version__}", done.stderr
