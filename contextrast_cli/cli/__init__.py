"""The ``contextrast`` command line: parse, load the config, one library call, print.

``app`` lives in ``cli.app``; importing this package registers every command on it.
"""

from contextrast_cli.cli import ablate, analyze, data, evaluate, export, predict, train, visualize  # noqa: F401  (register commands)
from contextrast_cli.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
