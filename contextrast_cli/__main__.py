"""Allows ``python -m contextrast_cli``."""

from contextrast_cli.cli import main

main()
