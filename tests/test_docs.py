"""Docs that cannot rot: every command, config key and quick-start task is where the README says."""

import argparse
import ast
import re
import typing
from bisect import bisect_left
from collections.abc import Set
from functools import cache

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


def test_the_readme_lists_every_module_of_the_package() -> None:
    for folder in ("core", "inputs", "storage", "mail", "service", "commands"):
        row = next(
            line for line in README.splitlines() if line.startswith(f"| `reminder/{folder}/`")
        )
        listed = set(re.findall(r"`(\w+)`", row.split(" | ")[2]))
        modules = {path.stem for path in (REPO / "reminder" / folder).glob("*.py")}
        assert modules - {"__init__"} - listed == set(), f"reminder/{folder}/ in the README"


def test_the_performance_page_names_its_commands() -> None:
    page = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    for script in ("bench/scale.py", "bench/cluster.py", "bench/kill9.py", "bench/startup.py"):
        assert script in page


# Where a %-format string prints a value: "%s", "%d", "%.0f", "%g".
PRINTF_FIELD = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrifgx]")


@cache
def literal_pieces() -> frozenset[str]:
    """The text of the package's string literals (docstrings aside), cut where a value is
    printed into them (an f-string's field, a %-placeholder): what its messages are made of.
    """
    pieces: set[str] = set()
    for path in sorted((REPO / "reminder").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and id(node) not in docstrings:
                pieces.update(PRINTF_FIELD.split(text))
    return frozenset(pieces - {""})


def printed_by_the_package(fragment: str, pieces: Set[str]) -> bool:
    """Whether `fragment` is text the package prints: inside one literal, or the end of
    one, then whole ones, then the start of another, each printed into the one before
    ("the mail server" + ": " + "will retry ", from `"%s: %s"`)."""
    if any(fragment in piece for piece in pieces):
        return True
    ordered = sorted(pieces)
    reversed_ = sorted(piece[::-1] for piece in pieces)

    def starts_one(text: str) -> bool:
        at = bisect_left(ordered, text)
        return at < len(ordered) and ordered[at].startswith(text)

    def ends_one(text: str) -> bool:
        at = bisect_left(reversed_, text[::-1])
        return at < len(reversed_) and reversed_[at].startswith(text[::-1])

    reached = [cut for cut in range(1, len(fragment)) if ends_one(fragment[:cut])]
    seen = set(reached)
    while reached:
        cut = reached.pop()
        if starts_one(fragment[cut:]):
            return True
        for end in range(cut + 1, len(fragment)):
            if end not in seen and fragment[cut:end] in pieces:
                seen.add(end)
                reached.append(end)
    return False


def test_every_message_the_troubleshooting_section_quotes_is_printed_by_the_package() -> None:
    """A reworded message fails here, not in front of someone searching the README for it."""
    section = README.split("\n## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    messages = re.findall(r"\*\*`([^`]+)`\*\*", section)
    assert len(messages) >= 10
    pieces = literal_pieces()
    # The check tells a message of ours from one reworded or made up.
    assert printed_by_the_package("the mail server: will retry ", pieces)
    assert not printed_by_the_package("reload (a file changed) refused; still running", pieces)
    for message in messages:
        for fragment in message.split("…"):
            assert printed_by_the_package(fragment, pieces), (
                f"the README's Troubleshooting quotes {message!r}, but "
                f"{fragment!r} is printed nowhere in reminder/"
            )
