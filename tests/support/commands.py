"""The command line as tests call it."""

from __future__ import annotations

from reminder.cli import main
from tests.support.project import Project


def cli(project: Project, *args: str) -> int:
    return main(["--config", str(project.config), *args])
