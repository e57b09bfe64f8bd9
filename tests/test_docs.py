"""Docs that cannot rot: every command, config key and quick-start task is where the README says."""

import argparse
import re
import typing

from pydantic import BaseModel

from reminder.cli import parser
from reminder.inputs.config import Config
from tasks import TASKS
from tests.support.project import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = [
            a
            for a in typing.get_args(annotation) or (annotation,)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        key = prefix + name
        if nested:
            suffix = "[]." if typing.get_origin(annotation) is list else "."
            keys += config_keys(nested[0], key + suffix)
        else:
            keys.append(key)
    return keys


def test_every_command_has_help_and_is_in_the_readme() -> None:
    commands = subcommands()
    assert set(commands) == {
        "init",
        "check",
        "plan",
        "registrants",
        "preview",
        "send-test",
        "history",
        "run",
        "simulate",
        "status",
        "suppress",
        "unsuppress",
        "suppressed",
        "bounces",
        "ledger",
    }
    for name, command in commands.items():
        assert command.description, f"{name} has no help text"
        assert f"`reminder {name}" in README, f"{name} is missing from the README"
        for action in command._actions:
            if action.option_strings and action.dest not in ("help",):
                assert action.help, f"{name} {action.option_strings} has no help"


def test_every_config_key_is_in_the_readme_reference() -> None:
    reference = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_\[\].]+)` \|", reference, re.MULTILINE))
    keys = set(config_keys())
    assert keys - documented == set(), "keys missing from the README"
    assert documented - keys == set(), "the README documents keys that do not exist"


def test_the_quick_start_commands_exist_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^python3 tasks\.py (\w+)", quick, re.MULTILINE)
    assert commands == ["demo", "test"]
    assert all(command in TASKS for command in commands)
    ci = (REPO / ".ci" / "run").read_text()
    assert "exec python3 tasks.py test" in ci


def test_the_readme_performance_section_holds_measured_figures() -> None:
    performance = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "PERFORMANCE_FIGURES" not in performance
    for script in (
        "bench/registrants.py",
        "bench/compose.py",
        "bench/plan.py",
        "bench/transport.py",
        "bench/worker.py",
        "bench/http_load.py",
    ):
        assert script in performance


def test_the_table_of_contents_lists_every_section() -> None:
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- \[([^\]]+)\]\(#", contents, re.MULTILINE)
    sections = re.findall(r"^## (.+)$", README, re.MULTILINE)
    assert listed == [s for s in sections if s != "Contents"]


def test_the_performance_page_names_its_commands() -> None:
    page = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    for script in ("bench/scale.py", "bench/cluster.py", "bench/kill9.py", "bench/startup.py"):
        assert script in page
